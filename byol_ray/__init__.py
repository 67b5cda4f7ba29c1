"""byol-ray: BYOL ablations on Ray, tracked in MLflow."""

__all__ = ["load_encoder"]


def __getattr__(name: str):
    """`byol_ray.load_encoder`, imported on first use (the CLI starts without torch)."""
    if name == "load_encoder":
        from byol_ray.runtime.weights import load_encoder

        return load_encoder
    raise AttributeError(f"module 'byol_ray' has no attribute {name!r}")
