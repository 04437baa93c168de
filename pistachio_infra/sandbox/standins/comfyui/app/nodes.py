"""PISTACHIO SANDBOX STAND-IN for ComfyUI's nodes.py: the names of a few core node types, and the input specs of the
ones a Wan 2.1 text-to-video graph uses (read from upstream nodes.py and comfy_extras/nodes_hunyuan.py,
nodes_model_advanced.py; see tests/upstream/README.md rows U1-U3).

A spec is {"required": {...}, "optional": {...}}, RETURN_TYPES, OUTPUT_NODE, CATEGORY. An input's type is a
ComfyUI type name ("INT", "MODEL", ...), a list of allowed values (a COMBO), or FOLDER("loras"): the files ComfyUI's
folder_paths.get_filename_list would list for that folder, read when asked (so a file added later is seen).
"""

CORE_NODES = [
    "CheckpointLoaderSimple", "CLIPLoader", "CLIPTextEncode", "CLIPVisionLoader", "ControlNetLoader",
    "DualCLIPLoader", "EmptyLatentImage", "KSampler", "KSamplerAdvanced", "LoadImage", "LoraLoader",
    "LoraLoaderModelOnly", "SaveImage", "UNETLoader", "UpscaleModelLoader", "VAEDecode", "VAEEncode", "VAELoader",
    "EmptyHunyuanLatentVideo", "ModelSamplingSD3", "SaveAnimatedWEBP", "CreateVideo", "SaveVideo",
]

MAX_RESOLUTION = 16384
SAMPLERS = ["euler", "euler_ancestral", "heun", "dpm_2", "dpmpp_2m", "dpmpp_sde", "ddim", "uni_pc", "uni_pc_bh2"]
SCHEDULERS = ["simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal", "linear_quadratic"]
CLIP_TYPES = ["stable_diffusion", "stable_cascade", "sd3", "stable_audio", "mochi", "ltxv", "pixart", "cosmos",
              "lumina2", "wan", "hidream", "chroma", "ace", "omnigen2", "qwen_image"]

# folder_paths.folder_names_and_paths: a name -> the models/ sub-folders it reads (upstream folder_paths.py)
FOLDERS = {
    "diffusion_models": ("unet", "diffusion_models"),
    "text_encoders": ("text_encoders", "clip"),
    "vae": ("vae",),
    "loras": ("loras",),
    "checkpoints": ("checkpoints",),
}


class FOLDER:
    def __init__(self, name):
        self.name = name


def _int(default, lo, hi, step=1):
    return ("INT", {"default": default, "min": lo, "max": hi, "step": step})


def _float(default, lo, hi, step=0.01):
    return ("FLOAT", {"default": default, "min": lo, "max": hi, "step": step})


SPECS = {
    "UNETLoader": {
        "required": {"unet_name": (FOLDER("diffusion_models"),),
                     "weight_dtype": (["default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"],)},
        "RETURN_TYPES": ("MODEL",), "CATEGORY": "advanced/loaders"},
    "LoraLoaderModelOnly": {
        "required": {"model": ("MODEL",), "lora_name": (FOLDER("loras"),),
                     "strength_model": _float(1.0, -100.0, 100.0)},
        "RETURN_TYPES": ("MODEL",), "CATEGORY": "loaders"},
    "ModelSamplingSD3": {
        "required": {"model": ("MODEL",), "shift": _float(3.0, 0.0, 100.0)},
        "RETURN_TYPES": ("MODEL",), "CATEGORY": "advanced/model"},
    "CLIPLoader": {
        "required": {"clip_name": (FOLDER("text_encoders"),), "type": (CLIP_TYPES,)},
        "optional": {"device": (["default", "cpu"], {"advanced": True})},
        "RETURN_TYPES": ("CLIP",), "CATEGORY": "advanced/loaders"},
    "VAELoader": {
        "required": {"vae_name": (FOLDER("vae"),)},
        "RETURN_TYPES": ("VAE",), "CATEGORY": "loaders"},
    "CLIPTextEncode": {
        "required": {"text": ("STRING", {"multiline": True, "dynamicPrompts": True}), "clip": ("CLIP",)},
        "RETURN_TYPES": ("CONDITIONING",), "CATEGORY": "conditioning"},
    "EmptyHunyuanLatentVideo": {
        "required": {"width": _int(848, 16, MAX_RESOLUTION, 16), "height": _int(480, 16, MAX_RESOLUTION, 16),
                     "length": _int(25, 1, MAX_RESOLUTION, 4), "batch_size": _int(1, 1, 4096)},
        "RETURN_TYPES": ("LATENT",), "CATEGORY": "latent/video"},
    "KSampler": {
        "required": {"model": ("MODEL",), "seed": _int(0, 0, 0xFFFFFFFFFFFFFFFF), "steps": _int(20, 1, 10000),
                     "cfg": _float(8.0, 0.0, 100.0, 0.1), "sampler_name": (SAMPLERS,), "scheduler": (SCHEDULERS,),
                     "positive": ("CONDITIONING",), "negative": ("CONDITIONING",), "latent_image": ("LATENT",),
                     "denoise": _float(1.0, 0.0, 1.0)},
        "RETURN_TYPES": ("LATENT",), "CATEGORY": "sampling"},
    "VAEDecode": {
        "required": {"samples": ("LATENT",), "vae": ("VAE",)},
        "RETURN_TYPES": ("IMAGE",), "CATEGORY": "latent"},
    "SaveImage": {
        "required": {"images": ("IMAGE",), "filename_prefix": ("STRING", {"default": "ComfyUI"})},
        "RETURN_TYPES": (), "OUTPUT_NODE": True, "CATEGORY": "image"},
    "SaveAnimatedWEBP": {
        "required": {"images": ("IMAGE",), "filename_prefix": ("STRING", {"default": "ComfyUI"}),
                     "fps": _float(6.0, 0.01, 1000.0), "lossless": ("BOOLEAN", {"default": True}),
                     "quality": _int(80, 0, 100), "method": (["default", "fastest", "slowest"],)},
        "RETURN_TYPES": (), "OUTPUT_NODE": True, "CATEGORY": "image/animation"},
}
