"""The cold-start SFT's targets: the default is the old format target, and the describe cold start's text depends on
the images only, never on the labels (swapping every label leaves every target identical)."""

import dataclasses
import json
import random

import numpy as np
import pytest
from PIL import Image
from refreward_fixtures import TEST_BUDGET

from training.reward import formatsft
from training.reward.data import load_preferences
from training.reward.examples import PixelBudget, make_examples
from training.reward.judge import JUDGE_META

SWAP = {"A": "B", "B": "A", "tie": "A"}


def old_format_target(rng: random.Random) -> str:
    """The target as formatsft wrote it before the describe option (kept here verbatim)."""
    c, n = rng.choice(formatsft.VERDICTS), rng.choice(formatsft.VERDICTS)
    return f"<think>compare</think><answer>consistency: {c}; naturalness: {n}</answer>"


def spy_describe(calls: list):
    """A describe function that would leak a label if it were handed the example (it reads ``labels`` when present)
    and otherwise writes each image's mean RGB."""

    def describe(arg):
        calls.append(arg)
        leak = str(getattr(arg, "labels", ""))
        means = [np.asarray(im.convert("RGB"), float).reshape(-1, 3).mean(0).round().astype(int) for im in arg]
        return leak + "; ".join(" ".join(map(str, m)) for m in means)

    return describe


def examples(ws):
    pb = PixelBudget.model_validate(TEST_BUDGET)
    return [ex for s in load_preferences(ws) for ex in make_examples(s, pb, order="mirror", seed=0)]


def test_default_target_is_the_old_format_target(prefs_workspace):
    exs = examples(prefs_workspace)
    new, old = random.Random(3), random.Random(3)
    for ex in exs * 3:
        assert formatsft.target_for(ex, new) == old_format_target(old)
        assert formatsft.format_target(new) == old_format_target(old)
    assert new.random() == old.random()  # the same draws from the rng: the SFT's example order is unchanged


def test_describe_targets_never_depend_on_the_labels(prefs_workspace):
    exs = examples(prefs_workspace)
    swapped = [
        dataclasses.replace(
            ex,
            labels={c: SWAP[v] for c, v in ex.labels.items()},
            votes={c: {"A": v["B"], "B": v["A"], "tie": v["tie"]} for c, v in ex.votes.items()},
        )
        for ex in exs
    ]
    assert all(s.labels != e.labels for s, e in zip(swapped, exs, strict=True))
    calls: list = []
    describe = spy_describe(calls)
    r1, r2 = random.Random(5), random.Random(5)
    t1 = [formatsft.target_for(ex, r1, describe) for ex in exs]
    t2 = [formatsft.target_for(ex, r2, describe) for ex in swapped]
    assert t1 == t2
    assert all(isinstance(c, list) and all(isinstance(im, Image.Image) for im in c) for c in calls)
    # the description does follow the images: the two screen orders of a pair show A and B swapped
    assert any(t.split("</think>")[0] != u.split("</think>")[0] for t, u in zip(t1[::2], t1[1::2], strict=True))
    # and the verdicts are the random format verdicts, drawn as without describe
    r3 = random.Random(5)
    assert [t.split("</think>")[1] for t in t1] == [old_format_target(r3).split("</think>")[1] for _ in exs]


def test_train_writes_the_cold_start_in_the_judge_meta(tiny_judge, prefs_workspace, tmp_path):
    samples = load_preferences(prefs_workspace)
    default = formatsft.train(tiny_judge, samples, tmp_path / "fmt", steps=1, budget=TEST_BUDGET, batch=1)
    meta = json.loads((default / JUDGE_META).read_text())
    assert meta["max_new_tokens"] == 48 and "cold_start" not in meta and meta["stage"] == "format-sft"
    calls: list = []
    desc = formatsft.train(
        tiny_judge,
        samples,
        tmp_path / "desc",
        steps=2,
        budget=TEST_BUDGET,
        batch=1,
        describe=spy_describe(calls),
        max_new_tokens=96,
    )
    meta = json.loads((desc / JUDGE_META).read_text())
    assert meta["max_new_tokens"] == 96 and meta["cold_start"] == "describe"
    assert len(calls) == 2 and all(isinstance(c, list) for c in calls)


def test_vision_lr_groups_and_freezing(tiny_judge, prefs_workspace, tmp_path):
    import torch
    from safetensors.torch import load_file

    from training.reward.judge import load_model

    model = load_model(tiny_judge, "cpu", torch.float32)
    names = [n for n, _ in model.named_parameters()]
    (default,) = formatsft.param_groups(model, 1e-2)  # default: one group of every parameter at the optimizer's lr
    assert "lr" not in default and [id(p) for p in default["params"]] == [id(p) for p in model.parameters()]
    text, vision = formatsft.param_groups(model, 1e-2, vision_lr=1e-3)
    assert (text["lr"], vision["lr"]) == (1e-2, 1e-3)
    assert len(vision["params"]) == sum("visual" in n for n in names) > 0
    assert len(text["params"]) + len(vision["params"]) == len(names)
    # vision_lr = 0: the vision tower is frozen (bit-identical after training), the language model moves
    out = formatsft.train(
        tiny_judge,
        load_preferences(prefs_workspace),
        tmp_path / "f",
        steps=2,
        budget=TEST_BUDGET,
        batch=1,
        vision_lr=0,
    )
    before, after = load_file(tiny_judge / "model.safetensors"), load_file(out / "model.safetensors")
    vis = [k for k in before if "visual" in k]
    assert vis and all(torch.equal(before[k], after[k]) for k in vis)
    assert any(not torch.equal(before[k], after[k]) for k in before if "visual" not in k)


def solid(rgb, rng: np.random.Generator, side: int = 28) -> Image.Image:
    """A ``side``² image of one colour plus a little noise (what ``align`` captions, in the test's two classes)."""
    arr = np.clip(np.array(rgb, float) + rng.normal(0, 6, (side, side, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(arr)


def test_align_teaches_a_blind_judge_to_caption_images_it_never_saw(tiny_judge, prefs_workspace, tmp_path):
    """The align stage (single-image caption SFT) must make the caption follow the image: reddish → ``r``, bluish →
    ``b``, half each, so a judge blind to its images scores at most 0.5 on held-out images. Fails if the images do not
    reach the model, if the loss masks the caption instead of the prompt, or if the captions are mismatched with their
    images. The aligned folder must also load as ``train``'s base."""
    import torch

    from training.reward.judge import load_model, load_processor

    rng = np.random.default_rng(0)

    def sample(k):
        return [solid((200, 40, 40), rng) for _ in range(k)] + [solid((40, 40, 200), rng) for _ in range(k)]

    caption = {True: "r", False: "b"}

    def cap(im):
        r, _, b = np.asarray(im, float).reshape(-1, 3).mean(0)
        return caption[bool(r > b)]

    out = formatsft.align(tiny_judge, sample(8), cap, tmp_path / "aligned", steps=40, lr=1e-2, batch=8)
    model, proc = load_model(out, "cpu", torch.float32), load_processor(out)
    prompt = formatsft.align_prompt(proc)
    held = sample(6)
    with torch.no_grad():
        said = [
            proc.tokenizer.decode(
                model(**proc(text=[prompt], images=[im], return_tensors="pt")).logits[0, -1].argmax()
            )
            for im in held
        ]
    right = sum(s.strip() == cap(im) for s, im in zip(said, held, strict=True))
    assert right == len(held), said
    formatsft.train(out, load_preferences(prefs_workspace), tmp_path / "fmt", steps=1, budget=TEST_BUDGET, batch=1)


def test_verdict_function_sees_the_images_only_and_sets_the_verdicts(prefs_workspace):
    """``verdict`` (the SFT's verdicts from the images, in place of random draws) is handed the images, never the
    example: swapping every label leaves every target identical, and the target carries exactly its verdicts."""
    exs = examples(prefs_workspace)
    swapped = [dataclasses.replace(ex, labels={c: SWAP[v] for c, v in ex.labels.items()}) for ex in exs]
    calls: list = []

    def verdict(arg):
        calls.append(arg)
        if hasattr(arg, "labels"):  # would leak the label if it were handed the example
            return arg.labels["consistency"], arg.labels["naturalness"]
        bright = [float(np.asarray(im.convert("L"), float).mean()) for im in arg]
        return ("A" if bright[1] > bright[2] else "B", "tie")

    t1 = [formatsft.target_for(ex, random.Random(0), verdict=verdict) for ex in exs]
    t2 = [formatsft.target_for(ex, random.Random(0), verdict=verdict) for ex in swapped]
    assert t1 == t2
    assert all(isinstance(c, list) and all(isinstance(im, Image.Image) for im in c) for c in calls)
    for ex, t in zip(exs, t1, strict=True):
        c, n = verdict(list(ex.images))
        assert t == f"<think>compare</think><answer>consistency: {c}; naturalness: {n}</answer>"
    # the two screen orders of a pair swap A and B, so a verdict read from the candidates flips with the order
    firsts = [t.split("consistency: ")[1][0] for t in t1]
    assert any(a != b for a, b in zip(firsts[::2], firsts[1::2], strict=True))


def test_uniform_verdict_term_is_the_random_draws_expected_loss() -> None:
    """At a verdict token the uniform target's term is the mean over VERDICTS of the cross-entropy a random draw of
    that verdict would give (the draw's noise integrated out); every other token keeps its cross-entropy, and the
    result is HF's mean over the labelled tokens."""
    import torch

    torch.manual_seed(0)
    vocab, ids = 12, [3, 7, 9]
    logits = torch.randn(1, 8, vocab) * 3
    labels = torch.tensor([[-100, -100, 5, 1, 7, 2, 4, 0]])  # a verdict (7) at index 4
    draws = []
    for v in ids:
        lab = labels.clone()
        lab[0, 4] = v
        ce = torch.nn.functional.cross_entropy(logits[0, :-1], lab[0, 1:], ignore_index=-100, reduction="none")
        draws.append(ce)
    expected = torch.stack(draws).mean(0).sum() / 6  # 6 labelled tokens
    got = formatsft.uniform_verdict_loss(logits, labels, [4], ids)
    assert torch.allclose(got, expected, atol=1e-6)
    plain = torch.nn.functional.cross_entropy(logits[0, :-1], labels[0, 1:], ignore_index=-100)
    assert torch.allclose(formatsft.uniform_verdict_loss(logits, labels, [], ids), plain, atol=1e-6)
    assert not torch.allclose(got, plain, atol=1e-3)  # the verdict's term did change
    with pytest.raises(ValueError, match="not a verdict"):
        formatsft.uniform_verdict_loss(logits, labels, [3], ids)  # token 3 is not a verdict


def test_verdict_positions_are_the_verdict_tokens(tiny_judge) -> None:
    from training.reward.judge import load_processor

    tok = load_processor(tiny_judge).tokenizer
    vids = formatsft.verdict_token_ids(tok)
    assert [tok.decode([i]).strip() for i in vids] == list(formatsft.VERDICTS)
    for c, n in (("tie", "B"), ("A", "tie"), ("B", "A")):
        t = formatsft.format_target(random.Random(0), "1:r 2:g 3:b", (c, n))
        ids = tok("<|im_start|>assistant\n" + t + "<|im_end|>", add_special_tokens=False)["input_ids"]
        pos = formatsft.verdict_positions(tok, t, ids)
        assert [tok.decode([ids[p]]).strip() for p in pos] == [c, n]
        assert all(ids[p] in vids for p in pos)


def test_uniform_cold_start_trains_and_is_recorded(tiny_judge, prefs_workspace, tmp_path) -> None:
    samples = load_preferences(prefs_workspace)
    out = formatsft.train(
        tiny_judge, samples, tmp_path / "u", steps=1, budget=TEST_BUDGET, batch=2, verdict_target="uniform"
    )
    assert json.loads((out / JUDGE_META).read_text())["verdict_target"] == "uniform"
    for kw in ({"verdict_target": "soft"}, {"verdict_target": "uniform", "verdict": lambda ims: ("A", "A")}):
        with pytest.raises(ValueError, match="verdict_target"):
            formatsft.train(tiny_judge, samples, tmp_path / "x", steps=1, budget=TEST_BUDGET, batch=1, **kw)
