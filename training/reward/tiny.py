"""Tiny random Qwen2.5-VL judges built offline (no hub access), for tests, the demo and other recipes' tests.

``build_tiny_qwen_vl(out_dir)`` writes a complete checkpoint folder that ``from_pretrained`` loads like a real one:
``Qwen2_5_VLForConditionalGeneration`` weights (safetensors), its config and generation config, and a
``Qwen2_5_VLProcessor`` (Qwen2-VL image processor + a byte-level BPE tokenizer + the Qwen chat template).

The tokenizer is a ``tokenizers`` byte-level BPE trained on a few strings of the judge's vocabulary (the prompt, the
``<think>``/``<answer>`` format), so every string encodes and the judge's answer costs few tokens; the Qwen special
tokens (``<|im_start|>``, ``<|im_end|>``, ``<|vision_start|>``, ``<|vision_end|>``, ``<|image_pad|>``,
``<|video_pad|>``, ``<|endoftext|>``) are added as special tokens and their ids written into the model config. The
four format tags are ordinary added tokens (one token each), so a random model emits them often enough for the
graded format reward to vary within a GRPO group (a reward constant across a group gives no gradient).

``realistic_config("3b" | "7b")`` writes out the published Qwen2.5-VL-3B/7B-Instruct architecture in code (for
``benchmarks/reward_gpu.py``: a random-initialised model of the real size, no weights needed).
"""

from __future__ import annotations

from pathlib import Path

SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

FORMAT_TAGS = ("<think>", "</think>", "<answer>", "</answer>")

# The Qwen2.5-VL chat template (images only; `add_vision_id` numbers the pictures), as shipped with the Instruct
# checkpoints minus the video branch.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS = [
    "<think>The first candidate keeps the structure of the low-resolution input; the second adds texture.</think>",
    "<answer>consistency: A; naturalness: B</answer>",
    "<answer>consistency: B; naturalness: A</answer>",
    "<answer>consistency: tie; naturalness: tie</answer>",
    "Image 1 is the low-resolution input. Image 2 is candidate A. Image 3 is candidate B.",
    "Compare the two super-resolved candidates. Consistency: faithful to the input in content, colour, structure.",
    "Naturalness: looks like a real high-resolution photograph, no artifacts, no over-smoothing. Answer A, B or tie.",
    "You are a helpful assistant. system user assistant global view crop at x y native resolution",
    "0 1 2 3 4 5 6 7 8 9 score: 0.5 sharp blurry noise halo ringing colour shift",
]


def _tokenizer(vocab_size: int = 512):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=list(SPECIAL_TOKENS[1:]),
    )
    fast.add_tokens(list(FORMAT_TAGS))  # one token each, so a random tiny model emits them now and then
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _processor(tokenizer, min_pixels: int, max_pixels: int):
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor

    image_processor = Qwen2VLImageProcessor(
        min_pixels=min_pixels, max_pixels=max_pixels, patch_size=14, temporal_patch_size=2, merge_size=2
    )
    try:
        from transformers import Qwen2VLVideoProcessor

        video_processor = Qwen2VLVideoProcessor()
    except Exception:  # video processing needs torchvision; the judge never sees videos
        video_processor = None
    return Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=CHAT_TEMPLATE,
    )


def tiny_config(tokenizer, hidden: int = 32, layers: int = 2, vision_depth: int = 2):
    """A Qwen2.5-VL config a few hundred KB large. head_dim = hidden / heads; mrope_section sums to head_dim / 2."""
    from transformers import Qwen2_5_VLConfig

    heads = 2
    head_dim = hidden // heads
    half = head_dim // 2
    mrope = [half - 2 * (half // 3), half // 3, half // 3]
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    return Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": hidden,
            "intermediate_size": 2 * hidden,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "num_key_value_heads": 1,
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope},
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
            "tie_word_embeddings": True,
        },
        vision_config={
            "depth": vision_depth,
            "hidden_size": hidden,
            "intermediate_size": 2 * hidden,
            "num_heads": heads,
            "out_hidden_size": hidden,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 56,
            "fullatt_block_indexes": [vision_depth - 1],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )


def realistic_config(size: str = "3b", vocab_size: int | None = None):
    """The published Qwen2.5-VL-{3B,7B}-Instruct architecture (config.json of the hub checkpoints, written out).

    3B: text 2048 hidden, 36 layers, 16 heads / 2 KV heads, MLP 11008, tied embeddings; 7B: 3584, 28 layers, 28 / 4,
    MLP 18944. Both: vision tower 32 blocks of 1280 (16 heads, MLP 3420, window attention with full attention at
    blocks 7/15/23/31, 112-px windows), 14-px patches, 2x2 merge; mrope_section (16, 24, 24); rope θ = 1e6.
    """
    from transformers import Qwen2_5_VLConfig

    text = {
        "3b": dict(
            hidden_size=2048,
            intermediate_size=11008,
            num_hidden_layers=36,
            num_attention_heads=16,
            num_key_value_heads=2,
            vocab_size=151936,
            tie_word_embeddings=True,
        ),
        "7b": dict(
            hidden_size=3584,
            intermediate_size=18944,
            num_hidden_layers=28,
            num_attention_heads=28,
            num_key_value_heads=4,
            vocab_size=152064,
            tie_word_embeddings=False,
        ),
    }
    if size not in text:
        raise ValueError(f"unknown size {size!r}: choose 3b or 7b")
    t = dict(text[size])
    if vocab_size is not None:
        t["vocab_size"] = vocab_size
    tie = t.pop("tie_word_embeddings")
    t.update(
        max_position_embeddings=128000,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
        bos_token_id=151643,
        eos_token_id=151645,
        tie_word_embeddings=tie,
    )
    vision = dict(
        depth=32,
        hidden_size=1280,
        intermediate_size=3420,
        num_heads=16,
        out_hidden_size=t["hidden_size"],
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
        window_size=112,
        fullatt_block_indexes=[7, 15, 23, 31],
        tokens_per_second=2,
    )
    return Qwen2_5_VLConfig(
        text_config=t,
        vision_config=vision,
        image_token_id=151655,
        video_token_id=151656,
        vision_start_token_id=151652,
        vision_end_token_id=151653,
        tie_word_embeddings=tie,
    )


def build_tiny_qwen_vl(
    out_dir: str | Path,
    seed: int = 0,
    hidden: int = 32,
    layers: int = 2,
    min_pixels: int = 28 * 28,
    max_pixels: int = 448 * 448,
) -> Path:
    """Build and save a tiny random Qwen2.5-VL judge + processor into ``out_dir``; returns the folder.

        Safe to call twice on the same folder (it is rebuilt, same seed → same weights). ``max_pixels`` bounds what the
        image processor feeds the vision tower; the default, 448², is the default ``PixelBudget``'s largest image, so
    the tiny judge named in the missing-model hint of ``check_runtime`` runs with the default settings (a smaller
    one made that hint end in a second error, the pixel-budget check).
    """
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLForConditionalGeneration

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer()
    processor = _processor(tokenizer, min_pixels, max_pixels)
    config = tiny_config(tokenizer, hidden=hidden, layers=layers)
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        eos_token_id=config.text_config.eos_token_id,
        pad_token_id=config.text_config.pad_token_id,
        bos_token_id=config.text_config.bos_token_id,
        do_sample=False,
    )
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    return out
