import pytest

from course_lib.diagrams import draw_adapter_placement


@pytest.mark.parametrize("placement, n_adapters", [("none", 0), ("houlsby", 2), ("pfeiffer", 1), ("parallel", 1)])
def test_diagram_draws_one_box_per_adapter(placement, n_adapters):
    fig = draw_adapter_placement(placement)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts.count("adapter") == n_adapters
    assert texts.count("feed-forward") == 1 and texts.count("multi-head attention") == 1


def test_unknown_placement():
    with pytest.raises(ValueError, match="houlsby"):
        draw_adapter_placement("sideways")
