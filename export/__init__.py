"""Export targets (ONNX, TensorRT, Core ML, OpenVINO, ExecuTorch): not built yet. Nothing here runs."""
