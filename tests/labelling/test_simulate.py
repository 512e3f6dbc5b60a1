"""The demo's simulated annotators see what the rule says (labelling.simulate.proxy_scores): LR consistency and
sharpness, each in the right direction."""

import cv2
import numpy as np
from imagefixtures import natural_image

from labelling.simulate import proxy_scores


def test_proxy_scores_prefer_the_faithful_and_the_sharp():
    hr = natural_image(128, 128, 3)
    lr = cv2.resize(hr, (32, 32), interpolation=cv2.INTER_AREA)
    faithful = cv2.resize(lr, (128, 128), interpolation=cv2.INTER_NEAREST)  # area-downscales back to lr exactly
    shifted = np.roll(faithful, 6, axis=1)
    blurred = cv2.GaussianBlur(faithful, (0, 0), 3)
    (c_f, s_f), (c_s, _), (_, s_b) = proxy_scores(lr, faithful), proxy_scores(lr, shifted), proxy_scores(lr, blurred)
    assert c_f > c_s + 3  # dB
    assert s_f > s_b
