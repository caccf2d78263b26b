"""`python -m edge_app.cli ...` = `ecg-edge ...`."""
import sys

from edge_app.cli import main

sys.exit(main())
