"""ECG edge triage appliance. A triage aid, not a diagnosis."""
from pathlib import Path

from setuptools import find_packages, setup

DEVICE = [
    "numpy>=1.24",
    "scipy>=1.10",
    "pyserial>=3.5",
    "paho-mqtt>=2.0,<3",
    "ai-edge-litert>=1.2",
    "wfdb>=4.1",
    "cryptography>=41",
    "psutil>=5.9",
]
TRAIN = ["tensorflow==2.21.*", "tf_keras==2.21.*", "tensorflow-model-optimization>=0.8", "pandas>=2", "matplotlib>=3.7"]
# The receiving end (cloud_dashboard): never needed on the device.
CLOUD = ["fastapi>=0.110", "uvicorn>=0.29", "sqlalchemy>=2.0", "alembic>=1.13", "psycopg[binary]>=3.1",
         "argon2-cffi>=23", "python-multipart>=0.0.9", "httpx>=0.27"]
DEV = ["pytest>=8", "pytest-timeout>=2.3", "hypothesis>=6.100", "jsonschema>=4.18", "playwright>=1.40"]

setup(
    name="ecg-edge-triage",
    version="0.1.0",
    description="12-lead ECG triage appliance for the edge (triage aid, not a diagnosis)",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11",
    packages=find_packages(include=["firmware_bridge*", "edge_app*", "training*", "cloud_dashboard*"]),
    include_package_data=True,
    package_data={"edge_app": ["display/static/*", "data/records/*", "data/dsp_designs.json", "uplink/schemas/*.json"],
                  "cloud_dashboard": ["web/static/*", "migrations/*.py", "migrations/*.mako", "migrations/versions/*.py"]},
    # The shipped model travels with the software (found by edge_app.config for non-editable installs).
    data_files=[("share/ecg-edge/quantized_models",
                 [str(p) for p in sorted(Path("quantized_models").glob("*")) if p.is_file()])],
    install_requires=DEVICE,
    extras_require={"train": TRAIN, "cloud": CLOUD, "dev": DEV, "all": TRAIN + CLOUD + DEV},
    entry_points={
        "console_scripts": [
            "ecg-edge=edge_app.cli:main",
            "ecg-fleet=cloud_dashboard.fleet_cli:main",
            "ecg-cloud=cloud_dashboard.cli:main",
            "ecg-frontend-sim=firmware_bridge.simulator_cli:main",
            "ecg-train=training.cli:main",
        ]
    },
)
