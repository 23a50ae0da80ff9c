"""The sktime estimator: every check of sktime's own ``check_estimator`` passes, and it learns a real set."""

import numpy as np
import pytest

pytest.importorskip("sktime")

from sktime.datasets import load_basic_motions, load_unit_test  # noqa: E402
from sktime.utils.estimator_checks import check_estimator  # noqa: E402

from dilated_rnn.sktime import DilatedRNNClassifier  # noqa: E402


def test_every_sktime_check_passes():
    results = check_estimator(DilatedRNNClassifier, raise_exceptions=False)
    failed = {name: str(outcome)[:200] for name, outcome in results.items() if outcome != "PASSED"}
    assert len(results) > 200 and not failed, failed


def test_fits_a_real_multivariate_set_and_its_probabilities_follow_classes():
    X_train, y_train = load_basic_motions(split="train", return_X_y=True)  # 6 channels, 4 classes
    X_test, y_test = load_basic_motions(split="test", return_X_y=True)
    clf = DilatedRNNClassifier(hidden_size=16, steps=150, random_state=0).fit(X_train, y_train)
    proba = clf.predict_proba(X_test)
    assert proba.shape == (40, 4) and np.allclose(proba.sum(1), 1)
    assert list(clf.classes_[proba.argmax(1)]) == list(clf.predict(X_test))
    assert np.mean(clf.predict(X_test) == y_test) >= 0.6  # four classes: chance 0.25


def test_the_same_seed_gives_the_same_model_and_no_validation_keeps_the_last_step():
    X, y = load_unit_test(split="train", return_X_y=True)
    a = DilatedRNNClassifier(hidden_size=4, steps=10, random_state=3).fit(X, y).predict_proba(X)
    b = DilatedRNNClassifier(hidden_size=4, steps=10, random_state=3).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(a, b)  # the recipe's augmentation too is a function of the seed
    plain = DilatedRNNClassifier(hidden_size=4, steps=10, augment="", random_state=3).fit(X, y).predict_proba(X)
    assert not np.allclose(a, plain)  # augment="" trains on the batches as they are
    values = DilatedRNNClassifier(hidden_size=4, steps=10, differences="off", random_state=3).fit(X, y)
    assert values.trained_.config.input_size == 1 and not values.trained_.transform.differences
    fitted = DilatedRNNClassifier(hidden_size=4, steps=10, random_state=3).fit(X, y)
    assert fitted.trained_.config.input_size == 2 and fitted.trained_.features == 1  # the recipe's: differences
    every = DilatedRNNClassifier(hidden_size=4, steps=10, val_fraction=0, random_state=3).fit(X, y)
    assert every.predict_proba(X).shape == (len(y), 2)
