"""Export: trained checkpoints to ONNX with the preconditioning folded in, and
ONNX to TensorRT engines. ``export_denoiser`` does the same for a torch network of
the user's own (``edgediff.export.module``; imported on first use, so importing a
sibling such as ``edgediff.export.tensorrt`` does not pull in torch)."""

_MODULE_API = ("export_denoiser", "precondition", "ModuleSpec")


def __getattr__(name: str):
    if name in _MODULE_API:
        from edgediff.export import module

        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
