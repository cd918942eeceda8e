import numpy as np
import pytest

import zoo
from zoo import profiles


def test_named_profiles():
    np.testing.assert_allclose(profiles.Profile("uniform")(4), [1, 1, 1, 1])
    np.testing.assert_allclose(profiles.Profile("linear")(4), [1, 0.75, 0.5, 0.25])
    np.testing.assert_allclose(profiles.Profile("harmonic")(4), [1, 1 / 2, 1 / 3, 1 / 4])
    np.testing.assert_allclose(
        profiles.Profile("half_exp")(6), [1, 1, 1, 1, np.exp(-1), np.exp(-2)]
    )
    # `gamma_i = 1` for `i < n / 2`: three ones of five.
    np.testing.assert_allclose(profiles.Profile("half_exp")(5), [1, 1, 1, 1, np.exp(-1)])
    np.testing.assert_allclose(profiles.Profile("exp", rate=0.5)(3), np.exp([0, -0.5, -1]))
    np.testing.assert_allclose(profiles.Profile("steps")(6), [1, 1, 0.5, 0.5, 0.25, 0.25])


@pytest.mark.parametrize("name", profiles.list_profiles())
def test_profiles_are_non_increasing(name):
    gamma = profiles.Profile(name)(37)
    assert gamma[0] == 1 and np.all(np.diff(gamma) <= 0)


def test_cumulative_minimum_projects_onto_non_increasing():
    projected = profiles.CumulativeMinimum()(np.array([1.0, 0.5, 0.7, 0.2, 0.3], "float32"))
    np.testing.assert_allclose(projected, [1.0, 0.5, 0.5, 0.2, 0.2])


def test_unknown_profile_lists_known_ones():
    with pytest.raises(ValueError, match="Known profiles: .*linear"):
        profiles.Profile("cubic")


def test_profile_variables_are_the_profiles_alone():
    assert zoo.build("resnet20", width=0.25).profile_variables == []
    model = zoo.build("resnet20", width=0.25, profile=profiles.Profile("linear", trainable=True))
    assert model.profile_variables
    assert all(v.name == "profile" for v in model.profile_variables)
