"""pistachio-infra: character LoRAs on rented RunPod GPUs, installed into ComfyUI, with no pod left billing."""

__version__ = "0.1.0"
