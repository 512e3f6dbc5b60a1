"""Do the two recipes learn in the right direction? Tiny models, several seeds, known rewards.

(a) OP4KSR GRPO (training.sr.grpo) on a tiny random backbone against a known simple reward: the fidelity reward
    r = −mean|area↓(SR) − LR_clean| (closeness to a target, in [0, 1] units). Per seed: the deterministic policy's
    reward on fixed held-out LRs before and after ``--sr-steps`` GRPO steps; gain = after − before (must be > 0 in
    every seed). Also the share of the reward variance explained by the action noise (in log π) vs the input noise
    (not in log π), ``training.sr.grpo.noise_split``, at the start.
(b) RefReward judge (training.reward.recipe, TRL GRPO, the real prompt, A/B parsing and rewards) on a preference
    task a tiny model can see: the LR is a smooth random colour field, one candidate its faithful bicubic ×4 upscale,
    the other the same with a colour cast (R + m, G − m/2, B − m, m ∈ [50, 90] grey levels); 3 of 3 votes for the
    faithful one on both criteria, faithful = ``a`` in even pairs and ``b`` in odd ones (``write_cast_workspace``).
    Tiny random Qwen2.5-VL (hidden 32), 6 images of one vision token each. The defaults, in three stages, none of
    which sees a label before GRPO: (1) align (``formatsft.align``, the analogue of LLaVA's stage-1 feature
    alignment): 1,000 steps of single-image captioning, the caption a one-letter colour code of the image's pixels;
    (2) the describe cold start (``formatsft.train`` with ``describe``): 1,000 steps of SFT on the judge's real
    prompt whose think text is the colour code of each of the 6 images, its verdict tokens trained to the uniform
    distribution over A / B / tie (``verdict_target="uniform"``, since 2026-12-08; before, random draws); (3) GRPO with
    the recipe's rewards, KL β = 0.1 to the cold-start model, the vision tower frozen, mirrored pairs sharing a step
    (the recipe's ``pair_batches``), 10 % warm-up then cosine. Held-out accuracy (consistency, both A/B orders,
    greedy, pairs of LR images never trained on: about a third of ``--judge-n`` = 160) before GRPO (= after the
    cold start) and after, the teacher-forced verdict probabilities (``verdict_probs``: does the verdict depend on
    the images at all?), the held-out caption and description accuracies. ``--judge-cold-start format
    --align-steps 0 --judge-beta 0 --no-judge-freeze-vision --sft-steps 80 --judge-steps 200`` is the earlier
    format-only pipeline (tables below).

Final line: ``sr_grpo_gain_min=… judge_acc_before=… judge_acc_after=…``. Goals: gain > 0 in every seed; judge
≥ 0.75 held-out and ≥ 0.2 above its start.

(a) Measured 2026-12-07 afternoon (load 1–3, ~15–40 s a seed; ``--skip-judge --seeds 5``, then ``--first-seed 5
--seeds 5``). Gains in grey levels (×255), 5 seeds unless said:

| training pairs | LRs/step | held-out LRs | steps | lr | gains | negative |
|---|---|---|---|---|---|---|
| 8 | 4 | 4 | 80 | 1e-2 | −1.01 / +0.39 / +0.69 / +2.66 / +2.07 | 1 |
| 8 | 4 | 4 | 80 | 3e-3 | +0.87 / +1.72 / −0.26 / +0.80 / −0.17 | 2 |
| 8 | 4 | 4 | 200 | 3e-3 / 1e-2 | +1.43 / −0.48 / +0.16 / +1.45 / +0.24; +0.17 / −0.30 / +1.43 / −0.47 / +2.61 | 1; 2 |
| 8 | 4 / 8 | 16 | 80 | 1e-2 | +0.12 / +0.69 / +1.12 / −0.09 / +1.78; +0.97 / +0.68 / +1.06 / +1.43 / −0.16 | 1; 1 |
| 32 | 8 | 16 | 80 | 1e-2 | +1.20 / +0.89 / +1.94 / +1.41 / +0.19 | 0 |
| 32 | 8 | 16 | 160 | 1e-2 | +1.24 / +2.23 / +2.00 / +1.59 / +1.92 | 0 |
| 32 | 8 | 16 | 160 | 1e-2 | seeds 5–9: −0.23 / +0.29 / +1.11 / +1.78 / +1.45 | 1 |
| **32** | **8** | **16** | **240** | **1e-2** | **+1.25 / +2.95 / +2.40 / +2.63 / +2.34** | **0** |
| **32** | **8** | **16** | **240** | **1e-2** | **seeds 5–9: +0.07 / +0.50 / +2.04 / +1.16 / +1.27** | **0** |

The first row is the old default (8 training pairs, 4 LRs a step, 4 held-out LRs, 80 steps): on 2026-12-06 it gave
+0.30 / +0.27 / +0.40 in seeds 0–2, and now seed 0 gives −1.01 (same starting state: the action-noise shares are
unchanged, 0.67 / 0.81 / 0.47; what changed the trajectory since was not traced). With 8 training pairs the policy
fits their noise, and 4 held-out crops score it noisily: any setting of that size has a negative seed in 5. The
setting of 32 pairs, 8 LRs a step, 16 held-out and 160 steps rose in seeds 0–4 and in 9 of seeds 0–9 (mean +1.34;
seed 5 −0.23). The defaults now (bold, 2026-12-07 evening, load 1–5: the same with 240 steps) rise in all 10 seeds
(``sr_grpo_gain_min`` on seeds 0–2 = 1.25 / 255 = 0.0049; mean +1.66), seed 5 only just (+0.07 grey levels, where
its action noise explains 0.22 of the reward variance, the lowest of the 10). Action-noise share of the reward
variance at the start: 0.67 / 0.81 / 0.47 / 0.56 / 0.53 / 0.22 / 0.37 / 0.67 / 0.64 / 0.55 (seeds 0–9; input noise
the rest). The recipe's sign is pinned by the tests
(tests/training/sr: a flipped policy-gradient sign fails them).

(b) NOT met. Earlier settings (2026-12-07 night, seed 0, load 12–25, a prototype of this code path; before = 0.5
everywhere):

- The format was not learned: after the old format SFT (80 steps, lr 3e-3) only 25 % of answers *sampled* at
  T = 1 were well-formed, so most rollouts scored 0. 80 steps at lr 1e-2: 91 % (the default; GRPO's format reward
  then stays 0.9–1.0).
- A frozen random vision tower hides the task (SFT on the *true* verdicts, 80 steps, lr 1e-2: 0.5 frozen, 0.83
  held-out trainable): the benchmark sets ``freeze_vision: false``.
- Then GRPO, G = 4 unless said, vision trainable unless said, TRL's shuffle of single prompts, no warm-up:

  | setting | completions/step | steps | lr | held-out before → after | accuracy reward, first 5 → last 5 |
  |---|---|---|---|---|---|
  | vision frozen | 8 | 40 | 5e-4 / 2e-3 | 0.5 → 0.5 | 0.30 → 0.48 / 0.36 → 0.40 |
  | — | 8 | 40 | 2e-3 / 5e-3 | 0.5 → 0.5 | 0.36 → 0.39 / 0.19 → 0.26 |
  | — | 32 | 40 | 2e-3 | 0.5 → 0.5 | 0.33 → 0.43 |
  | darkened (×0.2–0.35) instead of cast | 32 | 40 | 2e-3 | 0.5 → 0.5 | 0.36 → 0.44 |
  | 2×2 tokens per image (LR 28², 56² views) | 16 | 40 | 2e-3 | 0.5 → 0.5 | 0.39 → 0.41 |
  | — | 16 | 40 / 80 | 5e-3 | 0.5 → 0.5 | 0.26 → 0.44 / 0.48 (swings 0.03–0.88) |
  | G = 8 | 32 | 40 | 3e-3 | 0.5 → 0.5 | 0.33 → 0.44 |
  | — | 16 | 16 | 1e-2 | 0.5 → 0.0 | 0.06 → 0.00 (format lost at step 2) |

Diagnosis (2026-12-07 morning, seed 0, n = 48, 33 training pairs = 66 mirrored prompts, 15 held-out pairs; load
4–17 on the 2 cores; the probes are scratch scripts, the last one is ``verdict_probs`` here):

1. Spread: after the format SFT the verdict at ``consistency:`` is A / B / tie with p = 0.35 / 0.42 / 0.23 — the
   *same* for every prompt (sd of P(A) over the 66 prompts 1e-4). Groups have reward spread (TRL's
   ``frac_reward_zero_std`` 0.0; 17 % of groups of 4 would have none on the consistency verdict alone): spread is not
   what is missing. The format SFT's greedy answer is therefore one position for every prompt: before = 0.5.
2. A/B mapping in the mirror order: hand-made completions naming the faithful screen position earn 1.0 and the other
   0.0 on all 66 prompts of both orders (labels = the faithful candidate's screen position): no bug.
3. Per-token loss: a completion is 15 tokens (2 verdicts); the format tokens are near-deterministic (format reward
   0.97), so their gradient (∝ 1 − p) is small, and the normalisation (``dapo``) only rescales what Adam rescales
   again. The verdict probabilities do move — P(tie) 0.23 → 0.01 within 40 steps — not in the image direction.
   (Other ``loss_type`` values not tried.)
4. Images: TRL's rollout inputs (token ids, ``pixel_values``, ``image_grid_thw`` = 6 × [1, 2, 2]) equal the
   evaluation path's exactly (8 of 8 prompts). (The training forward's log-probabilities agree with a direct forward
   within 2e-3 — as close as one prompt's images to another's: the judge's output barely depends on its images.)
5. The cause — the tiny random judge is blind to its images, and GRPO cannot make it see at these budgets:
   teacher-forced P(right) = P(wrong) (to 3 decimals) on held-out prompts after 40 steps (lr 5e-3), after 50 / 100 /
   200 steps (lr 3e-3, cosine, 10 % warm-up), after 50 steps at lr 1e-2 (which then lost the format at step ≈ 75; the
   zero-spread guard stopped it at 80). Even SFT on the *true* verdicts — the clean gradient GRPO only estimates —
   shows no image dependence after 20 steps at lr 5e-3, 40 at 1e-2 (from the base or the format SFT) or 60 at 1e-2
   (hidden 64, or initialisation std 0.2), then P(right) 0.79, held-out argmax accuracy 0.90 after 100 steps at 1e-2
   from the base. The image → verdict path starts at a saddle (six one-token images among 463 prompt tokens, nearly
   uniform attention, which cannot tell image 2 from image 3 — exactly what a mirrored pair swaps) that a
   consistent gradient leaves only after 60–100 steps at lr 1e-2. GRPO's expected gradient per completion is about
   half as large (∂E[r]/∂logit = p(1 − p) against 1 − p at p ≈ ½) and noisy, and at lr 1e-2 the noise breaks the
   format before the escape.
6. Fixed in the recipe on the way (``recipe.pair_batches``, default on): with ``order: mirror`` TRL's shuffle put a
   pair's two orders in different steps, so the position term of the gradient (label A in one order, B in the
   other) did not cancel within a step (a likely source of the all-A / all-B swings). Now the pairs are shuffled once
   and both orders share a step (test: ``test_mirror_pairs_share_a_step_and_warmup_reaches_the_trainer``, fails
   with TRL's shuffle). Warm-up and schedule are recipe settings now (``warmup_ratio``, ``lr_scheduler_type``).
   With pair batches, 40 steps at 5e-3: 0.5 → 0.5 (P(right) = P(wrong) = 0.493), as without them.

The defaults now (n = 160: 50 / 50 / 64 held-out pairs; 200 steps × 16 completions, G = 4, lr 3e-3, 10 % warm-up,
cosine; mirrored pairs in one step), 2026-12-07, seeds 0 / 1 / 2 as three parallel processes (``--skip-sr
--first-seed k --seeds 1``, 934–972 s each, niced, load 7–19): held-out 0.5 → 0.5 / 0.0 → 0.5 / 0.5 → 0.5 (seed
1's format SFT greedily answers "tie" to every prompt), 0 malformed after; accuracy reward 0.31 → 0.51 / 0.29 →
0.47 / 0.29 → 0.48, format reward 0.99–1.00, no group without reward spread. Teacher-forced P(right) = P(wrong)
before (0.349 / 0.305 / 0.311) and after (0.499 / 0.496 / 0.497), sd of P(A) over prompts ≤ 7e-4: the gain is the
tie answer dropping (P(tie) 0.30 / 0.39 / 0.38 → 0.001 / 0.008 / 0.006), not a preference.
``judge_acc_before=0.333 judge_acc_after=0.500``. With a constant 5e-3 after the warm-up (seed 2) the format broke
at step ≈ 70 and the zero-spread guard stopped the run at step 98 (0.5 → 0.0, all malformed); KL β = 0.04 to
the format-SFT model does not hold it at lr 1e-2 (cosine, seed 0: format lost at step ≈ 48, stopped at 51); a
cosine from 5e-3 over 400 steps loses it at step ≈ 164 (seed 0; P(right) = P(wrong) = 0.500 at step 100).
A cosine from 3e-3 over 600 steps (seed 0, n = 160, 505 s at load 3–4) keeps the format and stays blind: P(right)
= P(wrong) = 0.500 at steps 200, 400 and 600; held-out 0.5 → 0.5.

Describe cold start (``--judge-cold-start describe``; 2026-12-07 midday, n = 160, load 5–11 on the 2 cores): the
SFT's think text names a colour per image, computed from the pixels only (``describe_images``; verdicts still
random, the labels never reach it), so the judge is taught to look at each image by position before GRPO.

- Colour *words* (``image 2: yellow``, 2–6 tokens a word; seed 0): one description for every prompt (greedy
  description accuracy ≤ 0.54, the marginal) after 600 steps at lr 1e-2 or 3e-3, with the vision tower at 1e-3
  (``formatsft`` ``vision_lr``) or frozen, and after 1,000 steps (vision at 1e-3; the 6 images or the 3 global
  views).
- Fixed-length *codes* (``2:y``, 3 tokens an image, so every code and the verdict sit at one position in every
  prompt), lr 1e-2: the description starts to follow the images at step ≈ 600 (seed 0, 16 held-out prompts: 15
  distinct descriptions at steps 600 and 700, 1 at 100; greedy code accuracy 0.44 / 0.53 / 0.54 / 0.62 / 0.66 /
  0.59 at steps 100 / 200 / 600 / 700 / 800 / 900).
- Then GRPO as the defaults above (seeds 0 / 1 / 2 as parallel processes, 1,933 s each with 1,500 SFT steps):

  | GRPO setting | seed | description accuracy, SFT → GRPO | held-out before → after | P(right) / P(wrong) after |
  |---|---|---|---|---|
  | 200 steps, lr 3e-3, β = 0, vision trained | 0 | 0.58 → 0.35 | 0.58 → 0.50 | 0.505 / 0.483 |
  | — | 1 | 0.57 → 0.33 | 0.00 → 0.50 | 0.496 / 0.496 |
  | — | 2 | 0.36 → 0.07 | 0.00 → 0.50 | 0.499 / 0.499 |
  | 300 steps, lr 3e-3, β = 0.1, vision frozen | 0 | 0.58 → 0.56 | 0.58 → **0.97** | **0.939 / 0.058** |
  | — | 1 | 0.57 → 0.53 | 0.00 → 0.50 | 0.480 / 0.480 |
  | — | 2 | 0.36 → 0.36 | 0.00 → 0.50 | 0.494 / 0.494 |
  | 500 steps, otherwise as above | 0 | 0.58 → 0.63 | 0.58 → **0.97** | **0.943 / 0.056** |
  | — | 1 | 0.57 → 0.57 | 0.00 → 0.50 | 0.500 / 0.500 |
  | — | 2 | 0.36 → 0.36 | 0.00 → 0.50 | 0.495 / 0.494 |

  P(right) / P(wrong) are teacher-forced after the *true* description. Without a KL term GRPO erodes the
  description it does not reward and the verdict stays blind (sd of P(A) over prompts ≤ 0.026):
  ``judge_acc_before=0.193 judge_acc_after=0.500``. With β = 0.1 to the cold-start model and the vision tower
  frozen (1,690 s a seed, load 2–7) the description holds, and in seed 0 the judge learns the task for the first
  time — accuracy reward 0.43 → 0.96 over the run, held-out 0.97, P(A) now follows the images (sd 0.46) — while
  seeds 1 and 2 stay blind (sd ≤ 0.011): ``judge_acc_before=0.193 judge_acc_after=0.657``. 500 steps (1,412 /
  1,986 / 2,038 s, load 4–7) change nothing: seed 0 again 0.97 (its run ended at step 223 on the zero-spread guard
  because every rollout was right), seeds 1 and 2 blind (sd ≤ 0.002), ``judge_acc_after=0.657``. Goal not met in 2
  of 3 seeds: the describe cold start makes the escape possible, not reliable (seed 2's description is the weakest,
  0.36; seed 1's, 0.57, is as good as seed 0's). (The format cold start stayed the default until the align stage.)

Align stage (the defaults now; 2026-12-07 afternoon, n = 160, 2–3 processes in parallel at load 2–4, 6–13 min a
seed): ``formatsft.align`` — 1,000 steps of single-image captioning (32 images a step, ``colour_code``, every weight
trained; 35 s) — before the describe SFT, then GRPO with β = 0.1 and the vision tower frozen (lr 3e-3 cosine, 16
completions a step, G = 4 unless said). Held-out caption accuracy after align 0.70 / 0.88 / 0.71 / 0.70 (seeds 0–3;
the commonest code alone: 0.42 / 0.37 / 0.34 / 0.38). Description accuracy is greedy, after the describe SFT:

| describe SFT | GRPO | seed | description | held-out before → after | P(right) / P(wrong) after | sd P(A) |
|---|---|---|---|---|---|---|
| 300 | 300 | 0 | 0.57 | 0.50 → **0.88** | 0.80 / 0.20 | 0.39 |
| 300 | 300 | 1 | 0.51 | 0.00 → **0.91** | 0.86 / 0.13 | 0.44 |
| 300 | 300 | 2 | 0.47 | 0.14 → 0.51 | 0.50 / 0.48 | 0.04 |
| 300 | 600 | 2 | 0.47 | 0.14 → **0.84** | 0.70 / 0.30 | 0.30 |
| **1,000 (default)** | **300** | 0 | 0.67 | 0.42 → 0.50 | 0.50 / 0.49 | 0.02 |
| **1,000** | **300** | 1 | 0.51 | 0.50 → **0.88** | 0.85 / 0.14 | 0.45 |
| **1,000** | **300** | 2 | 0.77 | 0.50 → **0.89** | 0.93 / 0.06 | 0.49 |
| **1,000** | **300** | 3 | 0.67 | 0.00 → 0.50 | 0.49 / 0.49 | 0.00 |
| **1,000** | **300** | 4 | 0.60 | 0.50 → **0.86** | 0.77 / 0.23 | 0.36 |
| **1,000** | **300** | 5 | 0.47 | 0.45 → 0.50 | 0.49 / 0.50 | 0.02 |
| 1,000 | 600 | 0 / 1 / 2 / 3 | as above | 0.49 / **0.89** / **0.95** / 0.50 | seeds 0 and 3: 0.50 / 0.50 | |
| 1,000 | 300, G = 8 (32 a step) | 0 / 3 | as above | 0.51 / 0.50 | 0.50 / 0.49, 0.50 / 0.50 | |
| 1,000 | 300, lr 5e-3 | 0 / 1 / 3 | as above | 0.66 / **0.89** / 0.50 | seed 0: 0.61 / 0.39 | |
| 1,000 | 600, lr 5e-3 | 0 | as above | 0.54 | 0.53 / 0.47 | 0.28 |
| 1,000 | 300, lr 1e-2 | 0 | as above | 0.00 (format lost; zero-spread guard) | | |

The align stage turns the escape from the blind saddle from 1 seed in 3 into 2 in 3 (seeds 0–2) and is cheap (35 s,
and the describe SFT runs 1,000 steps, not 1,500). The defaults on seeds 0–2 (the bold rows; each seed as its own
process, ``--skip-sr --first-seed k --seeds 1``) give ``judge_acc_before=0.473 judge_acc_after=0.757``: the mean
meets the goal (≥ 0.75, +0.28 ≥ 0.2), **but not in every seed** — seed 0 with this schedule and seed 3 under every
setting tried stay blind (P(right) = P(wrong), sd P(A) ≤ 0.07); over seeds 0–5 the defaults make 3 of 6 learn (seeds
1, 2, 4; seed 5 blind too), mean after 0.69. A seed that escapes reaches 0.84–0.95 and its verdict follows the
images (sd P(A) 0.30–0.49); the runs that escaped with every rollout right were stopped by the zero-spread guard
("nothing left to learn"). Whether a seed escapes is not predicted by its caption or description accuracy (seed 1
escapes in every setting with the weakest description, 0.51; seeds 0 and 3, at 0.67, mostly do not), nor fixed by a
longer run, more rollouts per prompt or a larger lr (5e-3 moves seed 0 half-way, 1e-2 loses the format).

What the blind seeds lack (2026-12-07 evening, load 3–5, each seed its own process, defaults unless said). A probe
after align + 1,000 ``relate`` cold-start steps (below; scratch script; held-out prompts teacher-forced up to
``consistency:``): the final hidden state at the verdict varies across prompts by 0.0097 / 0.123 / 0.021 (mean sd per
dimension, seeds 0 / 1 / 3, of which GRPO then teaches only seed 1; after align alone 0.80 / 0.47 / 0.16), the A − B
logit by 0.007 / 0.10 / 0.036, while the verdict tokens' embeddings stay apart (|E_A − E_B| 1.1–1.7): random
verdicts are fitted best by a verdict that ignores the prompt, and the cold start goes most of the way there. It is
not the whole story: the sd of P(A) before GRPO (relate, seeds 0–5) does not separate the seeds that learn (1, 4, 5:
0.022 / 0.004 / 0.022) from those that do not (0, 2, 3: 0.0008 / 0.008 / 0.004). Changes tried on the blind seeds
(held-out before → after):

| change | seed 0 | seed 3 | seed 5 |
|---|---|---|---|
| judge hidden 64 (``--judge-hidden 64``) | 0.47 → 0.50 | 0.00 → 0.50 | format lost at step ≈ 50 (lr not retuned) |
| ``relate`` cold start (below) | 0.50 → 0.50 | 0.00 → 0.50 | 0.50 → **0.97** |
| describe, verdicts from the LR alone (``--sft-verdicts lr``) | 0.46 → 0.71 | 0.50 → 0.50 | 0.50 → 0.50 |
| the same, KL β = 0.02 | 0.46 → 0.70 | | |
| ``relate`` and ``--sft-verdicts lr`` | 0.49 → 0.49 | 0.49 → 0.50 | |
| cold-start loss −log P(A or B or tie) at the verdicts (not kept) | 0.50 → 0.50 | 0.50 → 0.50 | 0.50 → 0.50 |

- The LR-only verdicts (label-free: they agree with the label in exactly half of the mirrored prompts) give the
  verdict more spread in seeds 0 and 3, not in 5 (sd P(A) before GRPO 0.32 / 0.04 / 0.01 in seeds 0 / 3 / 5, against
  0.0008 / 0.004 / 0.022 with random verdicts in the ``relate`` runs), and seed 0 moves half-way (P(right) 0.68–0.69),
  but seeds 3 and 5 stay blind.
- ``relate`` (``--judge-cold-start relate``): the think text is the codes, then ``A:y|n B:y|n`` (does each
  candidate's code equal the LR's; still pixels only). The flags decide 88 % of the held-out prompts by themselves
  (12 % undecided, none wrong), a few tokens before the verdict; a seed still has to discover that a match is what is
  preferred, and seeds 0 and 3 do not.
  Over seeds 0–5 ``relate`` gives 0.50 / **0.92** / 0.50 / 0.50 / **0.99** / **0.97**: 3 of 6 again (seeds 1, 4, 5
  rather than 1, 2, 4; mean 0.73, seeds 0–2 0.64), so the default stays ``describe``.
- The set loss makes every verdict one letter (P(A) ≈ 1 for every prompt): no spread, nothing for GRPO.
- The verdict tokens masked out of the describe cold start's loss (2026-12-08, seeds 1 / 2 / 5, a scratch patch of
  ``formatsft.train``, not an option here): the SFT no longer fits random verdicts, so the teacher-forced verdict does
  vary across prompts before GRPO (sd P(A) 0.09 / 0.06 / 0.12, against 0.0008-0.022 with random verdicts), but no
  verdict token was ever a target, so every greedy answer is malformed (1.0 before and after; held-out 0.0 → 0.0)
  and GRPO's format reward reaches only 0.13-0.49 in 300 steps.
- The verdict tokens weighted 0.1 in the describe cold start's loss (2026-12-08, the same scratch patch: per-token
  cross-entropy of the completion, normalised by its token count as HF's loss is, the 2 verdict tokens of ~30
  weighted 0.1 instead of 1; everything else the defaults). The format is still learned (0 malformed after) and the
  random verdicts pull the verdict towards ignoring the prompt ten times less. Seeds 0-5: 0.50 → 0.50 / 0.49 →
  **0.99** / 0.50 → 0.50 / 0.07 → **0.95** / 0.72 → 0.88 / 0.50 → 0.75, against the defaults' 0.88 / 0.50 / 0.52 /
  0.95 / 0.97 / 0.55 on the same machine: seeds 1 and 5 now learn, seed 0 no longer does (seed 2's describe cold
  start failed: description accuracy 0.32), seed 4 starts at 0.72 (its verdict already reads the prompt after the
  cold start) and gains only 0.16. Mean after 0.76 against 0.73: again about half the seeds, different ones, not
  the fix; not an option.
- The verdict tokens trained to the uniform distribution over A / B / tie in the describe cold start
  (``--sft-verdict-target uniform``, ``formatsft`` ``verdict_target``; 2026-12-08, seeds 0-5 via a scratch patch of
  the same loss, then the option itself on seeds 6-8): the random draw's expected gradient without its noise. If
  fitting the draws' noise were what blinds the verdict, this would keep it reading the prompt. It does not: sd P(A)
  over held-out prompts after the cold start 0.0009 / 0.022 / 0.003 / 0.003 / 0.004 / 0.004 (seeds 0-5), as small as
  with the draws. Held out before -> after, seeds 0-5: 0.38 -> 0.50 / 0.05 -> **0.83** / 0.16 -> **0.96** / 0.05 ->
  **0.85** / 0.10 -> 0.50 / 0.38 -> **0.80**, against the draws' 0.88 / 0.50 / 0.52 / 0.95 / 0.97 / 0.55 on the same
  machine: 4 of 6 learn instead of 3, other seeds (1, 2, 3, 5 instead of 0, 3, 4), mean after 0.74 against 0.73.
  Seeds 6-8, both targets through the option, 6 processes at once (load 6-8): uniform 0.00 -> 0.43 (14 % malformed,
  description 0.40) / 0.49 -> **0.94** / 0.50 -> **0.91**; draws 0.43 -> 0.50 / 0.50 -> **0.93** / 0.50 -> 0.50. Over
  seeds 0-8, paired: **uniform 6 of 9 learn, mean after 0.75; draws 4 of 9, mean 0.70** (Fisher's exact p ~ 0.6: not
  a significant difference). Every seed that learns reads the images (sd P(A) 0.38-0.48 after, P(right) 0.73-0.95),
  every blind one does not (sd ≤ 0.05). The mechanism guessed is wrong (the verdict is as prompt-blind after the
  cold start either way), but the uniform target is the better of the two on the broadest paired comparison here,
  so it is the default since 2026-12-08 (``--sft-verdict-target draw`` for the earlier cold start). Its greedy
  verdict before GRPO is often ``tie`` (the three verdicts within ~0.01), hence the lower "before" figures.
  Still not every seed.

Policy gradient on the answer only (``--judge-policy-tokens answer``, the recipe's ``policy_tokens: answer``;
2026-12-07 night, a fresh machine, load 3–8, 3 seeds at a time, defaults otherwise). Hypothesis: the sampled
variations of the describe text get the same advantage as the verdict after them, noise spread over ~5x more tokens
in the weights whose Adam step it normalises. First variant: the answer-only mask on the whole loss (TRL's
``tool_mask``) — seed 0 0.50 → 0.89, seeds 3 and 5 blind, and seed 4 lost the format (malformed 0.91, description
0.69 → 0.50: nothing held the reasoning). Kept variant: (B, T) advantages, zero before ``<answer>``, the KL term on
every token:

| seed | description | held-out before → after | P(right) / P(wrong) after | sd P(A) before → after | all tokens |
|---|---|---|---|---|---|
| 0 | 0.65 | 0.50 → **0.89** | 0.87 / 0.13 | 0.0007 → 0.46 | 0.50 → **0.88** |
| 1 | 0.75 | 0.50 → 0.50 | 0.49 / 0.50 | 0.0009 → 0.002 | 0.50 → 0.50 |
| 2 | 0.42 | 0.50 → 0.50 | 0.49 / 0.50 | 0.008 → 0.04 | 0.50 → 0.52 |
| 3 | 0.74 | 0.00 → **0.95** | 0.76 / 0.22 | 0.004 → 0.29 | 0.00 → **0.95** |
| 4 | 0.69 | 0.50 → **0.98** | 0.96 / 0.04 | 0.003 → 0.48 | 0.50 → **0.97** |
| 5 | 0.76 | 0.45 → 0.50 | 0.49 / 0.49 | 0.015 → 0.008 | 0.45 → 0.55 |

The last column is the defaults (every token in the policy gradient) rerun on the same machine, same cold start
(identical description accuracies): the same three seeds learn, to the same accuracy, so masking the reasoning
out of the policy gradient changes nothing measurable here, and the default stays every token. The description
accuracies after the cold start on this machine (0.65 / 0.75 / 0.42 / 0.74 / 0.69 / 0.76) differ from those of the
align table above (0.67 / 0.51 / 0.77 / 0.67 / 0.60 / 0.47), measured on an earlier machine with the same code path
and seeds: the cold start is deterministic on one machine but not across machines (CPU kernels), and seeds 1 and 2,
which learned there with the defaults, stay blind here. Which seeds escape the blind saddle is a property of the
whole run, not of the seed number.

    nice -n 10 python benchmarks/training_direction.py                 # defaults: 3 seeds, SR then judge
    for k in 0 1 2; do nice -n 10 python benchmarks/training_direction.py --skip-sr --first-seed $k --seeds 1 & done
    # the format-only rows: add --judge-cold-start format --align-steps 0 --sft-steps 80 --judge-beta 0
    #   --no-judge-freeze-vision --judge-steps 200; the describe rows: --align-steps 0 --sft-steps 1500
    python benchmarks/training_direction.py --seeds 1 --sr-steps 4 --judge-steps 2 --sft-steps 4 --align-steps 4
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "training" / "sr"))
sys.path.insert(0, str(ROOT / "tests" / "training" / "reward"))


# ----------------------------------------------------------------------------------------------- (a) OP4KSR GRPO
@torch.no_grad()
def policy_reward(run, pairs) -> float:
    """Mean fidelity reward of the deterministic one-step SR (the policy mean) on held-out (hr, lr) tensors."""
    from training.sr import grpo

    m, out = run.model, []
    for hr, lr in pairs:
        sr = grpo.to_uint8(m.forward(lr))
        clean = grpo.to_uint8(torch.nn.functional.avg_pool2d(hr, m.cfg.scale))
        out.append(float(grpo.fidelity_reward(clean, [[s] for s in sr]).mean()))
    return float(np.mean(out))


def sr_seed(
    seed: int,
    steps: int,
    work: Path,
    lr: float = 1e-2,
    group: int = 8,
    batch: int = 8,
    n_held: int = 16,
    n_train: int = 32,
) -> dict:
    from op4ksr_fixtures import write_pairs_shards

    from training.sr import data, grpo
    from training.sr.config import TrainConfig
    from training.sr.tiny import build_tiny_op4ksr

    tdir, vdir = build_tiny_op4ksr(work / f"tiny{seed}", seed=seed)
    shards = write_pairs_shards(work / f"shards{seed}", n=n_train, hr=128, scale=4, seed=100 * seed)
    held = write_pairs_shards(work / f"held{seed}", n=n_held, hr=128, scale=4, seed=100 * seed + 50)
    torch.manual_seed(seed)
    cfg = TrainConfig.model_validate(
        {
            "model": {"transformer": str(tdir), "vae": str(vdir)},
            "stage": "grpo",
            "data": {"shards": [str(shards)], "crop": 64, "batch_size": batch, "shuffle_buffer": 4},
            "grpo": {"fidelity": 1.0, "group_size": group, "beta_kl": 0.0, "guard_window": 1000},
            "loss": {"ap": 0.0},
            "steps": steps,
            "lr": lr,
            "out": str(work / f"grpo{seed}"),
            "save_every": 10_000,
            "log_every": 10_000,
            "seed": seed,
        }
    )
    run = grpo.setup(cfg)
    stream = data.batches(data.pairs(data.shard_urls([str(held)]), 64, 4, seed, buffer=1), 1)
    pairs = [next(stream) for _ in range(n_held)]
    hr, lr = next(run.batches)
    split = grpo.noise_split(run, hr, lr, states=4, actions=4)
    before = policy_reward(run, pairs)
    run = grpo.train(run)
    after = policy_reward(run, pairs)
    rewards = [h["reward"] for h in run.history]
    return {
        "seed": seed,
        "before": before,
        "after": after,
        "gain": after - before,
        **split,
        "sample_reward_first5": float(np.mean(rewards[:5])),
        "sample_reward_last5": float(np.mean(rewards[-5:])),
        "zero_spread_steps": int(sum(h["zero_spread"] == 1.0 for h in run.history)),
    }


# -------------------------------------------------------------------------------------------- (b) RefReward judge
def cast_pair(i: int, seed: int, lr_side: int = 14, scale: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(LR, faithful, cast) of the judge task: LR = a smooth random colour field (a 3×3 grid of colours, bicubic to
    ``lr_side``², plus σ = 10 noise); faithful = its ×``scale`` bicubic upscale; cast = the same with a colour cast of
    m ∈ [50, 90] grey levels (R + m, G − m/2, B − m), i.e. not faithful to the LR's colours."""
    from PIL import Image

    rng = np.random.default_rng(10_000 * seed + i)
    grid = Image.fromarray(rng.integers(40, 216, (3, 3, 3)).astype(np.uint8))
    lr = np.asarray(grid.resize((lr_side, lr_side), Image.Resampling.BICUBIC)).astype(np.float32)
    lr = np.clip(lr + rng.normal(0, 10, lr.shape), 0, 255).astype(np.uint8)
    up = np.asarray(Image.fromarray(lr).resize((lr_side * scale,) * 2, Image.Resampling.BICUBIC))
    m = rng.uniform(50, 90)
    cast = np.clip(up.astype(np.float32) + np.array([m, -m / 2, -m], np.float32), 0, 255).astype(np.uint8)
    return lr, up, cast


def write_cast_workspace(root: Path, n: int, seed: int) -> Path:
    """A preferences table (``schemas.labels.PREFERENCES``, as ``sr4k aggregate`` writes it) of ``n`` cast pairs:
    the faithful candidate is ``a`` in even pairs and ``b`` in odd ones; 3 of 3 votes for it on both criteria."""
    from PIL import Image

    from pipelines.store.workspace import write_table
    from schemas.labels import PREFERENCES, PreferenceRec

    recs = []
    for i in range(n):
        lr, good, bad = cast_pair(i, seed)
        a, b, label = (good, bad, "a") if i % 2 == 0 else (bad, good, "b")
        paths = {}
        for name, arr in (("lr", lr), ("a", a), ("b", b)):
            paths[name] = f"images/pair{i:03d}_{name}.png"
            (root / "images").mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(root / paths[name])
        va, vb = (3, 0) if label == "a" else (0, 3)
        votes = {
            f"{c}_{k}": v
            for c in ("consistency", "naturalness")
            for k, v in (("votes_a", va), ("votes_b", vb), ("votes_tie", 0))
        }
        recs.append(
            PreferenceRec(
                pair_id=f"pair{i:03d}",
                lr_key=f"lr{i:03d}",
                lr_path=paths["lr"],
                model_a="x",
                model_b="y",
                version_a="1",
                version_b="1",
                path_a=paths["a"],
                path_b=paths["b"],
                consistency=label,
                consistency_agreement=1.0,
                consistency_ds=None,
                naturalness=label,
                naturalness_agreement=1.0,
                naturalness_ds=None,
                n_annotators=3,
                both_unusable_votes=0,
                **votes,
            )
        )
    write_table(root / "tables" / "preferences" / "part-000.parquet", recs, PREFERENCES)
    return root


HUES = ("red", "yellow", "green", "cyan", "blue", "magenta")


def colour_word(image, s_min: float = 0.15) -> str:
    """A coarse colour word from an image's mean RGB: ``grey`` when its HSV saturation is below ``s_min``, else the
    nearest of six 60° hue sectors centred on red, yellow, green, cyan, blue, magenta. On the cast task the cast
    candidate is mostly ``red`` and the faithful one shares the LR's word; the words tell them apart in about 87 % of
    pairs (seed 0, 300 pairs, ``s_min`` 0.15; 81 % at 0.05)."""
    import colorsys

    r, g, b = np.asarray(image.convert("RGB"), np.float64).reshape(-1, 3).mean(0) / 255
    h, sat, _ = colorsys.rgb_to_hsv(r, g, b)
    return "grey" if sat < s_min else HUES[int(((h * 360 + 30) % 360) // 60)]


CODES = {"red": "r", "yellow": "y", "green": "g", "cyan": "c", "blue": "b", "magenta": "m", "grey": "n"}


def describe_images(images: list) -> str:
    """The describe cold start's think text: ``k:<code>`` for each image k in prompt order, the code one letter of
    ``colour_word`` (``CODES``), e.g. ``1:y 2:y 3:r 4:n 5:n 6:r``. A function of the pixels only (``formatsft.train``
    passes it the images, never the labels). Fixed length on purpose (one token per letter, 3 per image): every code
    and the verdict then sit at the same position in every prompt; with the words (``image 2: yellow``, 2–6 tokens a
    word) 1,000 SFT steps never made the description depend on the images (module docstring)."""
    return " ".join(f"{k}:{CODES[colour_word(im)]}" for k, im in enumerate(images, 1))


def describe_relation(images: list) -> str:
    """The ``relate`` cold start's think text: ``describe_images``, then whether each candidate's global view has the
    LR global view's code, ``A:y|n B:y|n`` (images 2 and 3 against image 1), e.g. ``1:y 2:y 3:r 4:n 5:n 6:r A:y B:n``.
    Still a function of the pixels only (the images, never the labels; the verdicts in the SFT stay random): it is
    perception a pre-trained MLLM brings ("B is redder than the LR"), and it agrees with the faithful candidate only as
    far as the colour codes do (``relation_agreement``). What GRPO must still learn is the preference itself: that a
    match is what is preferred, and which verdict letter names which screen position in both orders."""
    a, b = relation_flags(images)
    return describe_images(images) + f" A:{'y' if a else 'n'} B:{'y' if b else 'n'}"


def relation_flags(images: list) -> tuple[bool, bool]:
    """Whether candidate A's and B's global views (images 2 and 3) have the LR global view's (image 1) code."""
    lr, a, b = (CODES[colour_word(im)] for im in images[:3])
    return a == lr, b == lr


def lr_verdicts(images: list) -> tuple[str, str]:
    """The ``lr`` cold-start verdicts: a function of the LR alone — consistency ``A`` when the LR global view's code
    (image 1) is grey, red or green, else ``B``; naturalness ``A`` when the LR crop's (image 4) is grey, blue or
    magenta, else ``B``. The LR is the same in both orders of a mirrored pair while the label swaps, so these verdicts
    agree with the label in exactly half of the prompts: no preference information (like random verdicts), but a
    verdict the SFT can only fit by reading the prompt, where random verdicts are fitted best by a verdict that ignores
    it (in the seeds probed, much of what left the verdict's state nearly constant; module docstring)."""
    codes = [CODES[colour_word(im)] for im in (images[0], images[3])]
    return ("A" if codes[0] in "nrg" else "B", "A" if codes[1] in "nbm" else "B")


def relation_agreement(samples, budget: dict) -> dict:
    """How far the ``relate`` flags (``relation_flags``) decide the consistency label by themselves, over both
    orders: share of prompts where exactly one candidate matches and it is the labelled one (``decides_right``),
    where exactly one matches and it is the other (``decides_wrong``), and where the flags are equal
    (``undecided``)."""
    from training.reward.examples import PixelBudget, make_examples

    pb = PixelBudget.model_validate(budget)
    n = right = wrong = 0
    for s in samples:
        for ex in make_examples(s, pb, order="mirror"):
            a, b = relation_flags(list(ex.images))
            n += 1
            if a != b:
                right += ("A" if a else "B") == ex.labels["consistency"]
                wrong += ("A" if a else "B") != ex.labels["consistency"]
    return {"decides_right": right / n, "decides_wrong": wrong / n, "undecided": (n - right - wrong) / n}


@torch.no_grad()
def description_accuracy(model_dir: Path, samples, budget: dict, limit: int = 24) -> dict:
    """Share of the colour codes a judge writes (greedy and sampled at T = 1, inside ``<think>``) that equal
    ``describe_images``' code for that image position, on up to ``limit`` prompts (both orders)."""
    import re

    from training.reward.examples import PixelBudget, make_examples
    from training.reward.judge import load_model, load_processor

    model, proc = load_model(model_dir, "cpu", torch.float32), load_processor(model_dir)
    exs = [ex for s in samples for ex in make_examples(s, PixelBudget.model_validate(budget), order="mirror")][:limit]
    out = {}
    for mode, kw in (("greedy", {"do_sample": False}), ("sampled", {"do_sample": True, "temperature": 1.0})):
        right = total = 0
        for ex in exs:
            text = proc.apply_chat_template(ex.prompt, add_generation_prompt=True, tokenize=False)
            inp = proc(text=[text], images=ex.images, return_tensors="pt")
            ids = model.generate(**inp, max_new_tokens=48, **kw)[0, inp["input_ids"].shape[1] :]
            think = proc.decode(ids, skip_special_tokens=True).split("</think>")[0]
            said = dict(re.findall(r"(\d):(\w)", think))
            for k, im in enumerate(ex.images, 1):
                total += 1
                right += said.get(str(k)) == CODES[colour_word(im)]
        out[mode] = right / max(total, 1)
    return out


def example_images(samples, budget: dict) -> list:
    """The views (PIL) of every example of ``samples``, both orders: what the judge sees, image by image."""
    from training.reward.examples import PixelBudget, make_examples

    pb = PixelBudget.model_validate(budget)
    return [im for s in samples for ex in make_examples(s, pb, order="mirror") for im in ex.images]


def colour_code(image) -> str:
    """The align stage's caption of one image: the one-letter ``CODES`` of its ``colour_word``."""
    return CODES[colour_word(image)]


@torch.no_grad()
def caption_accuracy(model_dir: Path, images: list, limit: int = 384) -> dict:
    """Greedy single-image caption accuracy after the align stage (``formatsft.align``'s prompt), on up to ``limit``
    images, against the share of the commonest code (what a judge blind to its images gets at best)."""
    from collections import Counter

    from training.reward.formatsft import align_prompt
    from training.reward.judge import load_model, load_processor

    model, proc = load_model(model_dir, "cpu", torch.float32), load_processor(model_dir)
    prompt = align_prompt(proc)
    ims = images[:limit]
    right = 0
    for im in ims:
        inp = proc(text=[prompt], images=[im], return_tensors="pt")
        right += proc.tokenizer.decode(model(**inp).logits[0, -1].argmax()).strip() == colour_code(im)
    codes = Counter(colour_code(im) for im in ims)
    return {"accuracy": right / max(len(ims), 1), "commonest": codes.most_common(1)[0][1] / max(len(ims), 1)}


def judge_accuracy(model_dir: Path, samples) -> dict:
    from training.reward.evaluate import evaluate_pairs
    from training.reward.judge import load_judge

    res = evaluate_pairs(load_judge(str(model_dir), device="cpu"), samples, baselines=False)
    return res["judge"]["consistency"]


@torch.no_grad()
def verdict_probs(model_dir: Path, samples, budget: dict, describe=None) -> dict:
    """Teacher-forced P(consistency verdict) after the format prefix ``<think>compare</think><answer>consistency:``
    (with ``describe``: ``<think>`` + the example's true description), per prompt (both orders): mean P(right),
    P(wrong), P(tie), and the spread of P(A) over prompts. Greedy accuracy only moves when the right verdict overtakes
    the wrong one; these show whether the policy's verdict depends on the images at all (a judge blind to them has
    P(right) = P(wrong) and sd P(A) ≈ 0)."""
    from training.reward.examples import PixelBudget, make_examples
    from training.reward.judge import load_model, load_processor

    model, proc = load_model(model_dir, "cpu", torch.float32), load_processor(model_dir)
    rows = []
    for s in samples:
        for ex in make_examples(s, PixelBudget.model_validate(budget), order="mirror"):
            text = proc.apply_chat_template(ex.prompt, add_generation_prompt=True, tokenize=False)
            n = proc(text=[text], images=ex.images, return_tensors="pt")["input_ids"].shape[1]
            lp = []
            think = describe(list(ex.images)) if describe else "compare"
            for v in ("A", "B", "tie"):
                full = proc(
                    text=[f"{text}<think>{think}</think><answer>consistency: {v}"],
                    images=ex.images,
                    return_tensors="pt",
                )
                logits = model(**full).logits[0, n - 1 : -1].log_softmax(-1)
                lp.append(float(logits.gather(1, full["input_ids"][0, n:, None]).sum()))
            p = np.exp(np.array(lp) - max(lp))
            p /= p.sum()
            right = {"A": 0, "B": 1}[ex.labels["consistency"]]
            rows.append((p[right], p[1 - right], p[2], p[0]))
    r = np.array(rows)
    return {
        "p_right": float(r[:, 0].mean()),
        "p_wrong": float(r[:, 1].mean()),
        "p_tie": float(r[:, 2].mean()),
        "sd_p_a": float(r[:, 3].std()),
    }


def judge_seed(
    seed: int,
    sft_steps: int,
    steps: int,
    work: Path,
    sft_lr: float,
    lr: float,
    n: int = 48,
    batch: int = 16,
    group: int = 4,
    warmup: float = 0.0,
    schedule: str = "linear",
    pair_batches: bool = True,
    cold_start: str = "format",
    max_len: int = 48,
    sft_vision_lr: float | None = None,
    freeze_vision: bool = False,
    beta: float = 0.0,
    align_steps: int = 0,
    align_lr: float = 3e-3,
    sft_verdicts: str = "random",
    hidden: int = 32,
    layers: int = 2,
    policy_tokens: str = "all",
    verdict_target: str = "uniform",
) -> dict:
    from training.reward import formatsft, recipe
    from training.reward.config import load_config
    from training.reward.data import load_preferences, split_by_lr
    from training.reward.judge import JUDGE_META
    from training.reward.tiny import build_tiny_qwen_vl

    budget = {"global_max_pixels": 28 * 28, "crop_size": 28, "n_crops": 1}  # 6 images of one vision token each
    ws = write_cast_workspace(work / f"ws{seed}", n=n, seed=seed)
    base = build_tiny_qwen_vl(work / f"judge{seed}", seed=seed, hidden=hidden, layers=layers)
    train_s, held_s = split_by_lr(load_preferences(ws), 0.33, seed)
    describe = {"describe": describe_images, "relate": describe_relation}.get(cold_start)
    captions = None
    if align_steps:
        base = formatsft.align(
            base, example_images(train_s, budget), colour_code, work / f"align{seed}", align_steps, align_lr, seed=seed
        )
        captions = caption_accuracy(base, example_images(held_s, budget))
        print(json.dumps({"seed": seed, "caption_accuracy_after_align": captions}), flush=True)
    fmt = formatsft.train(
        base,
        train_s,
        work / f"sft{seed}",
        steps=sft_steps,
        budget=budget,
        seed=seed,
        lr=sft_lr,
        verdict=lr_verdicts if sft_verdicts == "lr" else None,
        verdict_target=verdict_target,
        **({"describe": describe, "max_new_tokens": max_len} if describe else {}),
        **({"vision_lr": sft_vision_lr} if sft_vision_lr is not None else {}),
    )
    desc_before = description_accuracy(fmt, held_s, budget) if describe else None
    print(json.dumps({"seed": seed, "description_accuracy_after_sft": desc_before}), flush=True)
    before = judge_accuracy(fmt, held_s)
    probs_before = verdict_probs(fmt, held_s, budget, describe)
    cfg = load_config(
        None,
        {
            "model": str(fmt),
            "data": str(ws),
            "output_dir": str(work / f"grpo-judge{seed}"),
            "num_generations": group,
            "per_device_train_batch_size": batch,
            "max_steps": steps,
            "max_completion_length": max_len,
            "holdout": 0.33,
            "order": "mirror",
            "pixel_budget": budget,
            "learning_rate": lr,
            "warmup_ratio": warmup,
            "lr_scheduler_type": schedule,
            "pair_batches": pair_batches,
            "save_steps": 10_000,
            "temperature": 1.0,
            "beta": beta,
            "policy_tokens": policy_tokens,
            "seed": seed,
            "freeze_vision": freeze_vision,
        },
    )
    summary = recipe.train(cfg)
    assert set(summary["held_out"]) == {s.rec.pair_id for s in held_s}  # the recipe held out the same pairs
    after = judge_accuracy(Path(summary["final"]), held_s)
    probs_after = verdict_probs(Path(summary["final"]), held_s, budget, describe)
    desc_after = description_accuracy(Path(summary["final"]), held_s, budget) if describe else None
    hist = [h for h in summary["log_history"] if "loss" in h]
    acc_r = [h.get("rewards/accuracy_reward_votes/mean", float("nan")) for h in hist]
    fmt_r = [h.get("rewards/format_reward/mean", float("nan")) for h in hist]
    zero = [h.get("frac_reward_zero_std", float("nan")) for h in hist]
    return {
        "seed": seed,
        "before": before["accuracy"],
        "after": after["accuracy"],
        "malformed_before": before["malformed"],
        "malformed_after": after["malformed"],
        "acc_reward_first5": float(np.mean(acc_r[:5])),
        "acc_reward_last5": float(np.mean(acc_r[-5:])),
        "format_reward_last5": float(np.mean(fmt_r[-5:])),
        "zero_spread_groups": float(np.nanmean(zero)) if zero else float("nan"),
        "probs_before": probs_before,
        "probs_after": probs_after,
        "description_before": desc_before,
        "description_after": desc_after,
        "cold_start": cold_start,
        "sft_verdicts": sft_verdicts,
        # what the cold start recorded it trained with (formatsft writes it when not the draws), not the argument
        "verdict_target": json.loads((fmt / JUDGE_META).read_text()).get("verdict_target", "draw"),
        "policy_tokens": policy_tokens,
        "align_steps": align_steps,
        "caption_accuracy": captions,
        "relation_agreement": relation_agreement(held_s, budget) if cold_start == "relate" else None,
        "held_pairs": len(held_s),
        "train_pairs": len(train_s),
        "stopped": summary["stopped"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0, help="seeds first-seed … first-seed + seeds − 1")
    ap.add_argument("--sr-steps", type=int, default=240, help="GRPO steps of the OP4KSR policy")
    ap.add_argument("--sr-lr", type=float, default=1e-2, help="AdamW lr of the LoRA in the GRPO stage")
    ap.add_argument("--sr-group", type=int, default=8, help="G samples per LR")
    ap.add_argument("--sr-batch", type=int, default=8, help="LRs per step")
    ap.add_argument("--sr-held", type=int, default=16, help="held-out LRs the policy mean is scored on")
    ap.add_argument("--sr-train", type=int, default=32, help="training pairs (128-px HR, x4)")
    ap.add_argument("--sft-steps", type=int, default=1000, help="cold-start SFT steps (4 examples each)")
    ap.add_argument("--judge-steps", type=int, default=300, help="GRPO steps of the judge")
    ap.add_argument("--sft-lr", type=float, default=1e-2, help="cold-start SFT lr (3e-3: format answers malformed)")
    ap.add_argument("--judge-lr", type=float, default=3e-3, help="GRPO peak lr (5e-3 constant lost the format)")
    ap.add_argument("--judge-batch", type=int, default=16, help="completions per GRPO step")
    ap.add_argument("--judge-group", type=int, default=4, help="G rollouts per prompt")
    ap.add_argument("--judge-n", type=int, default=160, help="cast pairs (a third held out by LR)")
    ap.add_argument("--judge-warmup", type=float, default=0.1, help="share of GRPO steps of lr warm-up")
    ap.add_argument("--judge-schedule", default="cosine", help="lr schedule after the warm-up")
    ap.add_argument(
        "--judge-cold-start",
        choices=("format", "describe", "relate"),
        default="describe",
        help="SFT think text: 'compare' (format), a colour code per image from its pixels (describe), or those codes "
        "and whether each candidate's code is the LR's (relate)",
    )
    ap.add_argument(
        "--align-steps",
        type=int,
        default=1000,
        help="single-image colour-caption steps (32 images each) before the cold start (formatsft.align; 0: none)",
    )
    ap.add_argument("--align-lr", type=float, default=3e-3, help="lr of the align stage")
    ap.add_argument("--judge-max-len", type=int, default=None, help="completion tokens")
    ap.add_argument("--sft-vision-lr", type=float, default=None, help="cold-start lr of the vision tower (0 frozen)")
    ap.add_argument(
        "--judge-freeze-vision",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="GRPO with the vision tower frozen",
    )
    ap.add_argument("--judge-beta", type=float, default=0.1, help="GRPO KL coefficient to the cold-start model")
    ap.add_argument(
        "--sft-verdicts",
        choices=("random", "lr"),
        default="random",
        help="cold-start verdicts: random draws, or a function of the LR alone (lr_verdicts; label-free either way)",
    )
    ap.add_argument(
        "--sft-verdict-target",
        choices=("uniform", "draw"),
        default="uniform",
        help="cold-start loss at the verdict tokens: uniform over A/B/tie, or the random draw (formatsft)",
    )
    ap.add_argument("--judge-hidden", type=int, default=32, help="hidden size of the tiny random judge")
    ap.add_argument("--judge-layers", type=int, default=2, help="decoder layers of the tiny random judge")
    ap.add_argument(
        "--judge-policy-tokens",
        choices=("all", "answer"),
        default="all",
        help="completion tokens the judge's GRPO loss reads (recipe policy_tokens)",
    )
    ap.add_argument("--skip-judge", action="store_true")
    ap.add_argument("--skip-sr", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.sft_verdicts == "lr" and args.sft_verdict_target == "uniform":
        ap.error("--sft-verdicts lr sets the verdicts' targets: add --sft-verdict-target draw")
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    sr_rows, judge_rows = [], []
    with tempfile.TemporaryDirectory(prefix="training-direction-") as tmp:
        work = Path(tmp)
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            if not args.skip_sr:
                sr_rows.append(
                    sr_seed(
                        seed,
                        args.sr_steps,
                        work,
                        args.sr_lr,
                        args.sr_group,
                        args.sr_batch,
                        args.sr_held,
                        args.sr_train,
                    )
                )
                print(json.dumps({"sr": sr_rows[-1]}), f"({time.perf_counter() - t0:.0f} s)", flush=True)
            if not args.skip_judge:
                judge_rows.append(
                    judge_seed(
                        seed,
                        args.sft_steps,
                        args.judge_steps,
                        work,
                        args.sft_lr,
                        args.judge_lr,
                        n=args.judge_n,
                        batch=args.judge_batch,
                        group=args.judge_group,
                        warmup=args.judge_warmup,
                        schedule=args.judge_schedule,
                        cold_start=args.judge_cold_start,
                        max_len=args.judge_max_len or 48,
                        sft_vision_lr=args.sft_vision_lr,
                        freeze_vision=args.judge_freeze_vision,
                        beta=args.judge_beta,
                        align_steps=args.align_steps,
                        align_lr=args.align_lr,
                        sft_verdicts=args.sft_verdicts,
                        hidden=args.judge_hidden,
                        layers=args.judge_layers,
                        policy_tokens=args.judge_policy_tokens,
                        verdict_target=args.sft_verdict_target,
                    )
                )
                print(json.dumps({"judge": judge_rows[-1]}), f"({time.perf_counter() - t0:.0f} s)", flush=True)
            if args.json:
                args.json.write_text(json.dumps({"sr": sr_rows, "judge": judge_rows}, indent=1))
    gain_min = min((r["gain"] for r in sr_rows), default=float("nan"))
    before = float(np.mean([r["before"] for r in judge_rows])) if judge_rows else float("nan")
    after = float(np.mean([r["after"] for r in judge_rows])) if judge_rows else float("nan")
    if sr_rows:
        print(
            f"OP4KSR GRPO, fidelity reward, {args.sr_steps} steps: gains (x255 grey levels) "
            + ", ".join(f"{255 * r['gain']:+.3f}" for r in sr_rows)
            + "; action-noise share of reward variance "
            + ", ".join(f"{r['action_frac']:.2f}" for r in sr_rows)
        )
    print(f"sr_grpo_gain_min={gain_min:.6g} judge_acc_before={before:.3f} judge_acc_after={after:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
