"""The built-in request trace of the Chorus demo: families of similar prompts (attribute / colour
swaps, style and camera variants of one scene), unrelated prompts, and two tenants.

Synthetic, not a production trace: five template families (as in "repeated effect templates"
traffic), four unrelated prompts and one cross-tenant repeat, 32 requests. It makes the mechanics
(tiers, token diffs, tenant isolation, cold start) visible. Each item is ``(tenant, prompt)``; the
first request of each family is a cold miss.
"""

from __future__ import annotations

__all__ = ["BUILTIN_TRACE", "QUICK_TRACE", "load_prompt_file"]

_BIKE = "a {c} vintage bicycle leaning against a brick wall in the rain, {s}"
_BEACH = "a beautiful coastal beach in spring, waves lapping on the sand, {s}"
_CAT = "a fluffy {c} cat sleeping on a sunny windowsill next to a potted plant, {s}"
_CITY = "a futuristic city skyline at night with flying cars and neon lights, {s}"
_FOX = "a {c} fox running through a snowy pine forest at dawn, {s}"

BUILTIN_TRACE: list[tuple[str, str]] = [
    ("acme", _BIKE.format(c="red", s="cinematic lighting")),
    ("acme", _BEACH.format(s="oil painting")),
    ("acme", _BIKE.format(c="green", s="cinematic lighting")),
    ("globex", _CAT.format(c="white", s="soft focus")),
    ("acme", _BEACH.format(s="oil painting, pan left")),
    ("globex", "an astronaut riding a horse on the surface of the moon"),
    ("globex", _CAT.format(c="orange", s="soft focus")),
    ("acme", _BIKE.format(c="blue", s="cinematic lighting")),
    ("globex", _CITY.format(s="cyberpunk style")),
    ("acme", _BEACH.format(s="watercolor painting")),
    ("globex", _CAT.format(c="black", s="soft focus")),
    ("acme", "a chef slicing vegetables in a busy restaurant kitchen"),
    ("globex", _CITY.format(s="cyberpunk style, zoom in")),
    ("acme", _BIKE.format(c="red", s="black and white photo")),
    ("globex", _FOX.format(c="red", s="slow motion")),
    ("acme", _BEACH.format(s="oil painting, zoom in")),
    ("globex", _CAT.format(c="white", s="soft focus, close up")),
    ("acme", _CAT.format(c="white", s="soft focus")),  # same prompt, other tenant: isolated (miss)
    ("globex", _FOX.format(c="arctic", s="slow motion")),
    ("globex", _CITY.format(s="pixel art style")),
    ("acme", _BIKE.format(c="yellow", s="cinematic lighting")),
    ("globex", "a bowl of ramen with steam rising, top view"),
    ("globex", _FOX.format(c="red", s="slow motion, tracking shot")),
    ("acme", _BEACH.format(s="oil painting, pan right")),
    ("globex", _CITY.format(s="cyberpunk style, aerial view")),
    ("acme", _BIKE.format(c="green", s="cinematic lighting, close up")),
    ("globex", _FOX.format(c="grey", s="slow motion")),
    ("globex", _CAT.format(c="grey", s="soft focus")),
    ("acme", _BEACH.format(s="impressionist painting")),
    ("globex", _CITY.format(s="cyberpunk style, in the rain")),
    ("acme", _BIKE.format(c="red", s="cinematic lighting, slow zoom out")),
    ("globex", _FOX.format(c="red", s="slow motion, low angle")),
]

QUICK_TRACE: list[tuple[str, str]] = [
    ("acme", _BIKE.format(c="red", s="cinematic lighting")),
    ("acme", _BIKE.format(c="green", s="cinematic lighting")),
    ("acme", _BEACH.format(s="oil painting")),
    ("acme", _BEACH.format(s="oil painting, pan left")),
    ("globex", _BIKE.format(c="red", s="cinematic lighting")),
    ("acme", "an astronaut riding a horse on the surface of the moon"),
]


def load_prompt_file(path: str) -> list[tuple[str, str]]:
    """One request per non-empty line: ``prompt`` or ``tenant<TAB>prompt``; ``#`` starts a comment line."""
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            tenant, _, prompt = line.partition("\t") if "\t" in line else ("default", "", line)
            if not prompt.strip() or not tenant.strip():
                raise ValueError(f"{path}:{n}: expected 'prompt' or 'tenant<TAB>prompt', got {line!r}")
            out.append((tenant.strip(), prompt.strip()))
    if not out:
        raise ValueError(f"{path}: no prompts")
    return out
