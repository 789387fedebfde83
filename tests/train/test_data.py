import pytest
import torch
from torch.utils.data import TensorDataset

from autobatch import DataError, TensorData
from autobatch.train.data import TrainBatches, ValBatches, check_data, labels_of, logits_of
from tests.conftest import blobs, tiny_workload

CPU = torch.device("cpu")


def test_train_batches_reshuffle_every_epoch_and_cover_the_data():
    data = TensorData(torch.arange(12.0)[:, None], torch.arange(12))
    stream = iter(TrainBatches(data, 4, CPU, seed=0))
    epoch1 = torch.cat([next(stream)[1] for _ in range(3)])
    epoch2 = torch.cat([next(stream)[1] for _ in range(3)])
    assert sorted(epoch1.tolist()) == list(range(12)) == sorted(epoch2.tolist())
    assert not torch.equal(epoch1, epoch2)


def test_train_batches_drop_the_partial_last_batch():
    data = TensorData(torch.arange(10.0)[:, None], torch.arange(10))
    stream = TrainBatches(data, 4, CPU, seed=0)
    sizes = [len(y) for _, (_, y) in zip(range(6), stream)]
    assert sizes == [4] * 6
    assert stream.batches_per_epoch == 2


def test_train_batches_are_seeded():
    data = TensorData(torch.arange(10.0)[:, None], torch.arange(10))
    first = [next(iter(TrainBatches(data, 5, CPU, seed=s)))[1].tolist() for s in (1, 1, 2)]
    assert first[0] == first[1] != first[2]


def test_dataset_path_uses_a_dataloader_with_the_same_semantics():
    dataset = TensorDataset(torch.arange(10.0)[:, None], torch.arange(10))
    stream = iter(TrainBatches(dataset, 5, CPU, seed=0))
    epoch = torch.cat([next(stream)[1] for _ in range(2)])
    assert sorted(epoch.tolist()) == list(range(10))


def test_val_batches_cover_the_set_in_order():
    data = TensorData(torch.arange(10.0)[:, None], torch.arange(10))
    ys = [y.tolist() for _, y in ValBatches(data, 4, CPU)]
    assert ys == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    # reusable: a second pass gives the same batches
    assert [y.tolist() for _, y in ValBatches(data, 4, CPU)] == ys


@pytest.mark.parametrize(("overrides", "batch", "match"), [
    ({"train_data": blobs(0)}, 8, "the training set is empty"),
    ({"val_data": blobs(0)}, 8, "the validation set is empty"),
    ({}, 1000, "the training set has 256 samples, fewer than one batch of 1000"),
    ({"train_data": TensorData(blobs(16).x, blobs(16).y + 3)}, 8,
     r"training labels span 3..5 but the model has 3 outputs"),
    ({"val_data": TensorData(blobs(16).x, blobs(16).y - 1)}, 8,
     r"validation labels span -1..1"),
    # a Dataset with no label list (no .targets): its labels are read from a sample
    ({"train_data": TensorDataset(blobs(16).x, blobs(16).y + 3)}, 8,
     r"training labels span 3..5 but the model has 3 outputs"),
])
def test_check_data_rejects_unusable_data(overrides, batch, match):
    workload = tiny_workload(**overrides)
    with pytest.raises(DataError, match=match):
        check_data(workload, batch, workload.model_factory(), CPU)


def test_check_data_accepts_good_data_and_restores_train_mode(tiny):
    model = tiny.model_factory().train()
    check_data(tiny, 32, model, CPU)
    assert model.training


def test_logits_of_unwraps_common_output_types():
    t = torch.ones(2, 3)

    class Out:
        logits = t

    assert logits_of(t) is t
    assert logits_of((t, torch.zeros(1))) is t
    assert logits_of(Out()) is t
    with pytest.raises(DataError, match="model returned str"):
        logits_of("nope")


def test_labels_of_reads_subsets_and_targets():
    from torch.utils.data import Subset

    class WithTargets(torch.utils.data.Dataset):
        targets = [0, 1, 2, 3]

        def __len__(self):
            return 4

    assert labels_of(Subset(WithTargets(), [3, 1])).tolist() == [3, 1]
    assert labels_of(TensorDataset(torch.zeros(2))) is None


@pytest.mark.parametrize("dataset", [False, True], ids=["tensors", "dataset"])
def test_train_batches_resume_from_their_state_on_the_next_batch(dataset):
    data = TensorData(torch.arange(12.0)[:, None], torch.arange(12))
    data = TensorDataset(data.x, data.y) if dataset else data
    whole = iter(TrainBatches(data, 4, CPU, seed=0))
    expected = [next(whole)[1].tolist() for _ in range(8)]
    for drawn in (0, 2, 3, 5):  # at the start, inside an epoch, on an epoch's last batch
        first = TrainBatches(data, 4, CPU, seed=0)
        stream = iter(first)
        head = [next(stream)[1].tolist() for _ in range(drawn)]
        resumed = TrainBatches(data, 4, CPU, seed=5)  # another seed: the state decides
        resumed.load_state(first.state())
        rest = iter(resumed)
        assert head + [next(rest)[1].tolist() for _ in range(8 - drawn)] == expected
        assert resumed.epoch == 2  # the stream counts the epochs it began
