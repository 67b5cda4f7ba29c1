"""byol-ray: BYOL ablations on Ray, tracked in MLflow."""
