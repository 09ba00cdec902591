"""Export: trained checkpoints to ONNX with the preconditioning folded in, and
ONNX to TensorRT engines."""
