"""The constants that define the periodicity statistic, shared by the metric (``bench.metrics.periodicity``) and the
loss that trains against it (``training.sr.periodicity_loss``, L_AP): one definition, so the loss pushes down exactly
what the benchmark reports. Pure Python on purpose: the GPU benchmark scripts import the loss with only torch,
transformers and peft installed (no numpy/OpenCV/SciPy needed to read these)."""

LUMA = (0.299, 0.587, 0.114)  # BT.601 luma weights = cv2.COLOR_RGB2GRAY, which the metric uses
MASK_SIGMA = 16.0  # px, Gaussian window of the local residual energy used for contrast normalisation
MASK_FLOOR = 1.0 / 255.0  # one 8-bit level: residual below this is not amplified (invisible, quantisation noise)
LINE_BOX = 9  # spectral bins, side of the box over which the smooth (aperiodic) spectrum is estimated
LINE_KAPPA = 10.0  # a bin is periodic where its power exceeds LINE_KAPPA x the local smooth spectrum
