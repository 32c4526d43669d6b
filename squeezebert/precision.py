"""The two meanings of "precision", named apart: training runs fp32 weights under an autocast dtype; inference runs
the weights themselves in a format. Torch-free, so the server's settings (ONNX backend, no torch) read them too."""

TRAINING_PRECISIONS = ("fp32", "bf16", "fp16")  # autocast of the training forward pass (fp16: CUDA, loss-scaled)
WEIGHT_FORMATS = ("fp32", "bf16", "int8")  # what inference runs the weights in (squeezebert.infer.fast swaps)

__all__ = ["TRAINING_PRECISIONS", "WEIGHT_FORMATS"]
