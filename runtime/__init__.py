"""The deployable runtime: NumPy step loops over ONNX Runtime or TensorRT.

Nothing here imports torch, onnx or tensorrt at import time.
"""
