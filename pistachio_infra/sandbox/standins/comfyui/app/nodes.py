"""PISTACHIO SANDBOX STAND-IN for ComfyUI's nodes.py: the names of a few core node types (no implementations)."""

CORE_NODES = [
    "CheckpointLoaderSimple", "CLIPLoader", "CLIPTextEncode", "CLIPVisionLoader", "ControlNetLoader",
    "DualCLIPLoader", "EmptyLatentImage", "KSampler", "KSamplerAdvanced", "LoadImage", "LoraLoader",
    "LoraLoaderModelOnly", "SaveImage", "UNETLoader", "UpscaleModelLoader", "VAEDecode", "VAEEncode", "VAELoader",
    "EmptyHunyuanLatentVideo", "ModelSamplingSD3", "SaveAnimatedWEBP", "CreateVideo", "SaveVideo",
]
