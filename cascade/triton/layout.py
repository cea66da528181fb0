"""File names inside a model's version directory, shared by the writer and the adapters."""

TABLES_FILE = "tables.npz"
ONNX_FILE = "model.onnx"
FEATURE_ASSEMBLY_ADAPTER = "cascade.triton.feature_assembly_model"
ONNX_ADAPTER = "cascade.triton.onnx_model"
