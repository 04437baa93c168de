"""The sample prompts: the job's own (`sample_prompts`), else drawn from its captions; each has the trigger word."""

from __future__ import annotations

import random
import re

DEFAULT_COUNT = 4


def with_trigger(prompt: str, trigger: str) -> str:
    """`prompt` as given when it names the trigger word (as a whole word), else "<trigger>, <prompt>"."""
    prompt = " ".join(prompt.split())
    if re.search(rf"(?<![\w-]){re.escape(trigger)}(?![\w-])", prompt):
        return prompt
    return f"{trigger}, {prompt}" if prompt else trigger


def default_prompts(captions: list[str], trigger: str, character: str, *, count: int = DEFAULT_COUNT,
                    seed: int = 0) -> list[str]:
    """`count` distinct captions (a seeded choice, so a rerun asks for the same), each with the trigger word; a
    generic portrait prompt fills in when there are fewer captions."""
    usable = sorted({" ".join(c.split()) for c in captions if c.strip()})
    chosen = random.Random(seed).sample(usable, min(count, len(usable)))
    prompts = [with_trigger(c, trigger) for c in chosen]
    fillers = [f"a portrait of {character}", f"{character} standing, full body", f"a close-up of {character}",
               f"{character} walking outdoors"]
    for filler in fillers:
        if len(prompts) >= count:
            break
        prompts.append(with_trigger(filler, trigger))
    return prompts[:count]
