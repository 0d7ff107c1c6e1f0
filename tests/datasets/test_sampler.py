import pytest
import torch
from torch.utils.data import DataLoader

from lerobot.common.datasets.sampler import EpisodeAwareSampler

# Three episodes of 5, 3 and 4 frames.
INDEX = {"from": torch.tensor([0, 5, 8]), "to": torch.tensor([5, 8, 12])}


def test_all_frames_in_order():
    sampler = EpisodeAwareSampler(INDEX)
    assert list(sampler) == list(range(12))
    assert len(sampler) == 12
    assert all(isinstance(i, int) for i in sampler)


def test_drop_first_and_last():
    assert list(EpisodeAwareSampler(INDEX, drop_n_first_frames=1)) == [1, 2, 3, 4, 6, 7, 9, 10, 11]
    assert list(EpisodeAwareSampler(INDEX, drop_n_last_frames=1)) == [0, 1, 2, 3, 5, 6, 8, 9, 10]
    sampler = EpisodeAwareSampler(INDEX, drop_n_first_frames=1, drop_n_last_frames=1)
    assert list(sampler) == [1, 2, 3, 6, 9, 10]
    assert len(sampler) == 6


def test_episodes_emptied_by_dropping():
    sampler = EpisodeAwareSampler(INDEX, drop_n_first_frames=2, drop_n_last_frames=2)
    assert list(sampler) == [2]  # episode 1 (3 frames) and 2 (4 frames) vanish
    assert len(EpisodeAwareSampler(INDEX, drop_n_first_frames=10)) == 0
    assert list(EpisodeAwareSampler(INDEX, drop_n_last_frames=10, shuffle=True)) == []


def test_subset_of_episodes():
    assert list(EpisodeAwareSampler(INDEX, episode_indices_to_use=[2, 0])) == [0, 1, 2, 3, 4, 8, 9, 10, 11]
    assert list(EpisodeAwareSampler(INDEX, episode_indices_to_use=[1, 1])) == [5, 6, 7]
    assert list(EpisodeAwareSampler(INDEX, episode_indices_to_use=torch.tensor([1]))) == [5, 6, 7]
    assert len(EpisodeAwareSampler(INDEX, episode_indices_to_use=[])) == 0
    sampler = EpisodeAwareSampler(INDEX, episode_indices_to_use=[1], drop_n_first_frames=1)
    assert list(sampler) == [6, 7]


def test_non_contiguous_episodes_and_plain_lists():
    index = {"from": [10, 100], "to": [13, 101]}
    assert list(EpisodeAwareSampler(index)) == [10, 11, 12, 100]


def test_shuffle_is_a_permutation_and_reproducible():
    sampler = EpisodeAwareSampler(INDEX, drop_n_last_frames=1, shuffle=True, seed=0)
    first, second = list(sampler), list(sampler)
    expected = sorted(EpisodeAwareSampler(INDEX, drop_n_last_frames=1))
    assert sorted(first) == expected and sorted(second) == expected
    assert first != second  # a new order each epoch
    again = EpisodeAwareSampler(INDEX, drop_n_last_frames=1, shuffle=True, seed=0)
    assert list(again) == first and list(again) == second

    torch.manual_seed(3)
    a = list(EpisodeAwareSampler(INDEX, shuffle=True))
    torch.manual_seed(3)
    b = list(EpisodeAwareSampler(INDEX, shuffle=True))
    assert a == b and sorted(a) == list(range(12))

    gen = torch.Generator().manual_seed(5)
    c = list(EpisodeAwareSampler(INDEX, shuffle=True, generator=gen))
    assert c == list(EpisodeAwareSampler(INDEX, shuffle=True, generator=torch.Generator().manual_seed(5)))


def test_with_dataloader():
    data = torch.arange(12) * 10
    loader = DataLoader(data, batch_size=4, sampler=EpisodeAwareSampler(INDEX, drop_n_first_frames=1))
    assert torch.cat(list(loader)).tolist() == [10, 20, 30, 40, 60, 70, 90, 100, 110]


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"episode_data_index": {"from": torch.tensor([0])}}, TypeError, "'to'"),
        ({"episode_data_index": [0, 1]}, TypeError, "mapping"),
        (
            {"episode_data_index": {"from": torch.tensor([0, 2]), "to": torch.tensor([2])}},
            ValueError,
            "length",
        ),
        (
            {"episode_data_index": {"from": torch.tensor([3]), "to": torch.tensor([2])}},
            ValueError,
            "from <= to",
        ),
        ({"episode_data_index": {"from": torch.tensor([[0]]), "to": torch.tensor([[2]])}}, ValueError, "1-D"),
        (
            {"episode_data_index": {"from": torch.tensor([0.0]), "to": torch.tensor([2.0])}},
            TypeError,
            "integers",
        ),
        ({"episode_indices_to_use": [3]}, ValueError, "outside"),
        ({"episode_indices_to_use": [-1]}, ValueError, "outside"),
        ({"episode_indices_to_use": [0.5]}, TypeError, "ints"),
        ({"episode_indices_to_use": 1}, TypeError, "episode_indices_to_use"),
        ({"drop_n_first_frames": -1}, ValueError, "drop_n_first_frames"),
        ({"drop_n_last_frames": 1.0}, TypeError, "drop_n_last_frames"),
        ({"seed": 0, "generator": torch.Generator()}, ValueError, "not both"),
    ],
)
def test_bad_input(kwargs, exc, match):
    kwargs = {"episode_data_index": INDEX, **kwargs}
    with pytest.raises(exc, match=match):
        EpisodeAwareSampler(**kwargs)
