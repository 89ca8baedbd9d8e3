"""SubnetSpec and SearchSpace: validation, sampling, mutation, JSON round-trip."""

from __future__ import annotations

import numpy as np
import pytest

from edgekws.models import get_family, list_families
from edgekws.spec import SearchSpace, SpecError, SubnetSpec


@pytest.mark.parametrize("family", list_families())
def test_canonical_members_are_valid(family):
    space = get_family(family).space
    for spec in (space.largest(), space.smallest(), *space.width_multiplier_specs().values()):
        assert space.validate(spec) is spec
        assert SubnetSpec.from_json(spec.to_json()) == spec


def test_uniform_widths_and_rounding():
    space = get_family("dscnn").space
    assert space.uniform(1.0) == space.largest()
    assert space.uniform(0.25).channels == (16, 24, 40, 56)
    assert space.uniform(0.5).channels == (32, 48, 80, 112)
    # other multipliers snap to the nearest trained width per slot (ties go wider)
    assert space.uniform(0.6) == space.uniform(0.5)
    assert space.uniform(0.65) == space.uniform(0.75)
    assert space.uniform(0.5, depth=1).depths == (1, 1, 1)
    assert space.uniform(0.5, depth=3).depths == (2, 3, 3)  # stage1 tops out at 2
    with pytest.raises(SpecError, match=r"outside \(0, 1\]; the trained ones are 0.25, 0.5, 0.75, 1.0"):
        space.uniform(1.5)
    with pytest.raises(SpecError, match="valid: 1, 2, 3"):
        space.uniform(0.5, depth=7)


def test_validation_errors_list_valid_choices():
    space = get_family("dscnn").space
    with pytest.raises(SpecError, match=r"channels 100 for 'stage2' is not in the space \(valid: 40, 80, 120, 160\)"):
        space.validate(SubnetSpec("dscnn", (64, 96, 100, 224), (2, 3, 3)))
    with pytest.raises(SpecError, match="depth 4 for 'stage1'"):
        space.validate(SubnetSpec("dscnn", (64, 96, 160, 224), (4, 3, 3)))
    with pytest.raises(SpecError, match=r"4 channels \(stem, stage1, stage2, stage3\), got 2"):
        space.validate(SubnetSpec("dscnn", (64, 96), (2, 3, 3)))
    with pytest.raises(SpecError, match="family 'kwt'"):
        space.validate(get_family("kwt").space.largest())


@pytest.mark.parametrize("text", ['{"family": "dscnn"', '[1, 2]', '{"family": "dscnn", "widths": [1.5], "depths": [1]}',
                                  '{"family": "dscnn", "widths": [], "depths": [1]}', '{"family": 3, "widths": [1], "depths": [1]}'])
def test_malformed_json(text):
    with pytest.raises(SpecError):
        SubnetSpec.from_json(text)


@pytest.mark.parametrize("family", list_families())
def test_sample_mutate_crossover_stay_in_space(family):
    space = get_family(family).space
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(50):
        a, b = space.sample(rng), space.sample(rng)
        for s in (a, b, space.mutate(a, rng, 0.5), space.crossover(a, b, rng)):
            space.validate(s)
            seen.add(s)
    assert len(seen) > min(10, space.size() - 1) or space.size() == 1
    assert space.sample(np.random.default_rng(5)) == space.sample(np.random.default_rng(5))


def test_crossover_takes_slots_from_parents():
    space = get_family("dscnn").space
    a, b = space.largest(), space.smallest()
    child = space.crossover(a, b, np.random.default_rng(1))
    for i, w in enumerate(child.channels):
        assert w in (a.channels[i], b.channels[i])


def test_name_is_readable():
    assert get_family("dscnn").space.uniform(0.5).name == "dscnn-w32.48.80.112-d2.3.3"


def test_per_stage_sampling_visits_mixed_widths_and_uniform_does_not():
    import numpy as np

    from edgekws.models import get_family
    from edgekws.step import training_spec

    space = get_family("dscnn").space
    uniform = {s.channels for s in space.width_multiplier_specs().values()}
    rng = np.random.default_rng(0)
    per_stage = [training_spec(space, rng, "per_stage") for _ in range(400)]
    assert sum(s.channels not in uniform for s in per_stage) > 300  # 252 of 256 width tuples are mixed
    for slot, choices in enumerate(space.channel_choices):
        assert {s.channels[slot] for s in per_stage} == set(choices)
    assert all(training_spec(space, rng, "uniform").channels in uniform for _ in range(100))


def test_one_vocabulary_channels_are_counts_and_old_widths_keys_still_read():
    """`channels` are counts, a width is a multiplier: specs and spaces write `channels` /
    `channel_choices`; those written before (`widths`, `width_names`, `width_choices`) read the
    same; a spec with both keys is refused rather than guessed."""
    space = get_family("dscnn").space
    spec = space.uniform(0.5)
    assert spec.to_dict() == {"family": "dscnn", "channels": [32, 48, 80, 112], "depths": [2, 3, 3]}
    assert SubnetSpec.from_dict({"family": "dscnn", "widths": [32, 48, 80, 112], "depths": [2, 3, 3]}) == spec
    assert SubnetSpec.from_json(spec.to_json()) == spec
    with pytest.raises(SpecError, match='"channels"'):
        SubnetSpec.from_dict({"family": "dscnn", "widths": [32], "channels": [32], "depths": [2]})
    d = space.to_dict()
    assert "channel_choices" in d and "width_choices" not in d and d["width_multipliers"] == [0.25, 0.5, 0.75, 1.0]
    old = {{"channel_names": "width_names", "channel_choices": "width_choices"}.get(k, k): v for k, v in d.items()}
    assert SearchSpace.from_dict(old) == space == SearchSpace.from_dict(d)
