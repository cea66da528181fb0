"""Offline side: data, training, ONNX export, FAISS index and the Triton repository writer."""
