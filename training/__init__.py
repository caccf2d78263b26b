"""Training pipeline for the ECG triage model (TensorFlow side; never imported by edge_app)."""
