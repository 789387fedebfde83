import pickle
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from autobatch import (
    Budget,
    DataError,
    Recipe,
    RunConfig,
    TensorData,
    Workload,
    WorkloadError,
    load_workload,
    run,
)
from autobatch.workloads import BUILTINS, digits, mnist1d, mnist1d_long
from autobatch.workloads.vision import FAKE_TRAIN_SIZE, FAKE_VAL_SIZE


@pytest.mark.parametrize(("name", "params", "shape"), [
    ("mnist1d-cnn", 5210, (40,)),
    ("mnist1d-mlp", 15210, (40,)),
    ("digits-cnn", None, (1, 8, 8)),
])
def test_builtin_workloads_build_model_and_data(name, params, shape):
    workload = load_workload(name)
    model = workload.model_factory()
    if params is not None:
        assert sum(p.numel() for p in model.parameters()) == params
    assert tuple(workload.train_data.x.shape[1:]) == shape
    out = model(workload.val_data.x[:4])
    assert out.shape == (4, 10)
    assert workload.reference is not None


def test_mnist1d_validation_is_a_fixed_split_of_train_and_test_is_untouched():
    from mnist1d.data import get_dataset_args, make_dataset

    raw = make_dataset(get_dataset_args())
    train, val, test = mnist1d.splits()
    assert len(train) == 3200 and len(val) == 800 and len(test) == 1000
    raw_train = torch.as_tensor(raw["x"], dtype=torch.float32)
    raw_test = torch.as_tensor(raw["x_test"], dtype=torch.float32)
    # the test split is the generator's own, and the workload carries it for a final check
    assert torch.equal(test.x, raw_test)
    assert torch.equal(load_workload("mnist1d-cnn").test_data.y,
                       torch.as_tensor(raw["y_test"], dtype=torch.int64))
    together = torch.cat([train.x, val.x])
    # train + val is exactly the generator's training part, as a permutation
    assert torch.equal(together.sum(0), raw_train.sum(0)) or torch.allclose(
        together.sum(0), raw_train.sum(0), atol=1e-3)
    rows = {tuple(r.tolist()) for r in together}
    assert not rows & {tuple(r.tolist()) for r in raw_test}
    assert not {tuple(r.tolist()) for r in train.x} & {tuple(r.tolist()) for r in val.x}
    # the split is fixed: a fresh generation gives the same validation set
    mnist1d.splits.cache_clear()
    assert torch.equal(mnist1d.splits()[1].x, val.x)


def test_mnist1d_is_generated_once_then_read_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOBATCH_CACHE_DIR", str(tmp_path))
    x, y, _, _ = mnist1d.generated()
    cached = list(tmp_path.glob("mnist1d-*.npz"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    x2, y2, _, _ = mnist1d.generated()
    assert cached[0].stat().st_mtime_ns == stamp  # read, not rewritten
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    cached[0].write_bytes(b"torn")  # a damaged cache is generated again, never trusted
    x3 = mnist1d.generated()[0]
    assert np.array_equal(x, x3) and cached[0].stat().st_size > 1000


def test_recipe_fills_missing_values_from_reference():
    workload = load_workload("mnist1d-cnn")
    assert workload.recipe() == Recipe(batch_size=100, lr=1e-2, momentum=0.9, optimizer="adam")
    # an explicit LR means the workload's own optimizer, not the reference's Adam
    assert workload.recipe(batch_size=256, lr=0.3) == Recipe(
        batch_size=256, lr=0.3, momentum=0.9, optimizer=None)


def test_recipe_without_reference_needs_lr(tiny):
    with pytest.raises(WorkloadError, match="no reference recipe: give an LR"):
        tiny.recipe(batch_size=8)


@pytest.mark.parametrize(("spec", "match"), [
    ("nope", "unknown workload 'nope'; built-ins: digits-cnn, mnist1d-cnn, mnist1d-long, "
             "mnist1d-mlp"),
    ("user_workloads.good", "has no ':'"),
    ("user_no_such_module:fn", "module 'user_no_such_module' not found"),
    ("user_workloads:missing", "module 'user_workloads' has no attribute 'missing'"),
    ("user_workloads:returns_int", "returned int, expected an autobatch.Workload"),
    ("user_workloads:not_callable", r"'user_workloads:not_callable' is not callable \(its type "
                                    r"is int\)"),
    ("torchvision:resnet1000", "unknown torchvision classification model 'resnet1000'"),
    ("torchvision:resnet18", "needs --data"),
])
def test_load_workload_errors_name_the_problem(spec, match, fixtures_on_path):
    with pytest.raises(WorkloadError, match=match):
        load_workload(spec)


def test_entry_point_loads_with_app_dir(fixtures_on_path):
    workload = load_workload("user_workloads:good", app_dir=fixtures_on_path)
    assert workload.name == "user-good"


def test_missing_app_dir_is_reported(tmp_path):
    with pytest.raises(WorkloadError, match="is not a directory"):
        load_workload("mod:fn", app_dir=tmp_path / "absent")


def test_users_own_import_error_propagates_unchanged(fixtures_on_path):
    with pytest.raises(ModuleNotFoundError, match="autobatch_no_such_dependency") as info:
        load_workload("user_broken_import:workload")
    assert info.value.name == "autobatch_no_such_dependency"


def test_a_missing_dependency_named_like_a_prefix_of_the_module_is_the_users_error(tmp_path):
    # module 'mymodel' imports a missing 'my': not a missing entry point
    (tmp_path / "mymodel.py").write_text("import my\n")
    with pytest.raises(ModuleNotFoundError) as info:
        load_workload("mymodel:workload", app_dir=tmp_path)
    assert info.value.name == "my"


def test_users_syntax_error_propagates_unchanged(tmp_path):
    (tmp_path / "user_syntax_bad.py").write_text("def workload(:\n    pass\n")
    with pytest.raises(SyntaxError):
        load_workload("user_syntax_bad:workload", app_dir=tmp_path)


def test_workload_rejects_non_callable_and_bad_data():
    data = TensorData(torch.zeros(4, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(WorkloadError, match="model_factory must be callable"):
        Workload(name="w", model_factory=None, train_data=data, val_data=data)
    with pytest.raises(WorkloadError, match="train_data must be a TensorData or a torch Dataset"):
        Workload(name="w", model_factory=lambda: None, train_data=[1, 2], val_data=data)
    with pytest.raises(WorkloadError, match="as many labels as inputs"):
        TensorData(torch.zeros(4, 2), torch.zeros(3))


def test_torchvision_fake_data_has_requested_shape_and_classes():
    workload = load_workload("torchvision:resnet18", data="fake", image_size=32, num_classes=5)
    x, y = workload.train_data[0]
    assert x.shape == (3, 32, 32)
    assert 0 <= y < 5
    assert len(workload.train_data) == FAKE_TRAIN_SIZE
    assert len(workload.val_data) == FAKE_VAL_SIZE
    model = workload.model_factory()
    assert model.eval()(x[None]).shape == (1, 5)


def _write_image_tree(root, classes=("cat", "dog"), per_class=5):
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.full((12, 12, 3), 40 * c + i, dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")


def test_image_folder_holds_out_a_seeded_validation_split(tmp_path):
    _write_image_tree(tmp_path, per_class=10)
    workload = load_workload("torchvision:resnet18", data=str(tmp_path), image_size=16)
    assert len(workload.train_data) + len(workload.val_data) == 20
    assert len(workload.val_data) == 2
    assert set(workload.train_data.indices).isdisjoint(workload.val_data.indices)
    x, _ = workload.val_data[0]
    assert x.shape == (3, 16, 16)
    assert workload.model_factory().eval()(x[None]).shape == (1, 2)


def test_image_folder_uses_train_and_val_subfolders(tmp_path):
    _write_image_tree(tmp_path / "train", per_class=4)
    _write_image_tree(tmp_path / "val", per_class=2)
    workload = load_workload("torchvision:alexnet", data=str(tmp_path), image_size=64)
    assert (len(workload.train_data), len(workload.val_data)) == (8, 4)


def test_image_folder_trains_at_the_size_of_its_images_unless_told(tmp_path, caplog):
    _write_image_tree(tmp_path / "train", per_class=4)  # 12x12
    _write_image_tree(tmp_path / "val", per_class=2)
    Image.fromarray(np.zeros((40, 30, 3), dtype=np.uint8)).save(tmp_path / "train/cat/odd.png")
    with caplog.at_level("WARNING", logger="autobatch.workloads.vision"):
        workload = load_workload("torchvision:resnet18", data=str(tmp_path))
    assert workload.train_data[0][0].shape == workload.val_data[0][0].shape == (3, 12, 12)
    assert f"images in {tmp_path} are 12x12 (8 of 9 sampled): training at 12 px " \
           "(--image-size overrides)" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="autobatch.workloads.vision"):
        workload = load_workload("torchvision:resnet18", data=str(tmp_path), image_size=24)
    assert workload.train_data[0][0].shape == (3, 24, 24) and caplog.text == ""


@pytest.mark.parametrize(("make", "match"), [
    (lambda p: p / "absent", "does not exist"),
    (lambda p: p, "no images found"),
])
def test_bad_image_folders_are_reported(tmp_path, make, match):
    with pytest.raises(DataError, match=match):
        load_workload("torchvision:resnet18", data=str(make(tmp_path)))


def test_cifar10_on_disk_format_is_read(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR10

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 255, (4, 3072), dtype=np.uint8),
                 "labels": [int(v) for v in rng.integers(0, 10, 4)]}
        (folder / name).write_bytes(pickle.dumps(batch))
    meta = {"label_names": [f"c{i}" for i in range(10)]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    # the real files carry checksums; these synthetic ones cannot match them
    monkeypatch.setattr(CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda path, md5: True)
    workload = load_workload("torchvision:resnet18", data=str(folder))
    assert len(workload.train_data) + len(workload.val_data) == 20
    x, y = workload.train_data[0]
    assert x.shape == (3, 32, 32) and 0 <= y < 10


def test_incomplete_cifar10_folder_is_reported(tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    with pytest.raises(DataError, match="CIFAR-10 folder .* is incomplete"):
        load_workload("torchvision:resnet18", data=str(tmp_path))


def test_builtin_registry_lists_descriptions():
    assert set(BUILTINS) == {"mnist1d-cnn", "mnist1d-mlp", "mnist1d-long", "digits-cnn"}
    assert all(b.description for b in BUILTINS.values())
    assert all(0 < b.target < 1 for b in BUILTINS.values())


@pytest.mark.parametrize("name", ["mnist1d-cnn", "mnist1d-mlp", "digits-cnn"])
def test_a_builtin_lists_the_reference_its_workload_carries(name):
    assert load_workload(name).reference == BUILTINS[name].reference


@pytest.fixture
def small_long(monkeypatch):
    """mnist1d-long on 500 generated samples of its setting: the 50,000 take minutes."""
    small = {**mnist1d_long.GENERATOR, "num_samples": 500}
    monkeypatch.setattr(mnist1d_long, "splits", lambda: mnist1d.split(*mnist1d.generated(**small)))
    return load_workload("mnist1d-long")


def test_mnist1d_long_trains_its_reference_recipe_with_its_cosine(small_long):
    assert small_long.reference == BUILTINS["mnist1d-long"].reference
    assert (len(small_long.train_data), len(small_long.val_data)) == (320, 80)
    assert sum(p.numel() for p in small_long.model_factory().parameters()) == 81_354
    result = run(small_long, RunConfig.of(small_long.recipe(), budget=Budget(seconds=0.2)),
                 device="cpu")
    assert result.steps >= 1 and result.schedule.name == "cosine"
    assert result.schedule.horizon_steps == 30 * (320 // 128)


def test_generator_settings_make_another_cached_data_set(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOBATCH_CACHE_DIR", str(tmp_path))
    plain = mnist1d.generated(num_samples=200)
    noisy = mnist1d.generated(num_samples=200, iid_noise_scale=0.5)
    assert plain[0].shape == noisy[0].shape == (160, 40)
    assert not np.array_equal(plain[0], noisy[0])
    cached = sorted(p.name for p in tmp_path.glob("mnist1d-*num_samples200*.npz"))
    assert len(cached) == 2 and any("iid_noise_scale0.5" in name for name in cached)
    assert (mnist1d.generated(num_samples=200, iid_noise_scale=0.5)[0] == noisy[0]).all()


def test_fingerprint_changes_with_the_model(tiny):
    from torch import nn

    other = Workload(name=tiny.name, model_factory=lambda: nn.Linear(8, 3, bias=False),
                     train_data=tiny.train_data, val_data=tiny.val_data)
    assert tiny.fingerprint() == tiny.fingerprint()
    assert tiny.fingerprint() != other.fingerprint()


def test_fingerprint_changes_with_the_input_size():
    # same model, same sample counts: only the image side differs, and with it the memory
    small, large = (load_workload("torchvision:resnet18", data="fake", image_size=side)
                    for side in (32, 64))
    assert small.fingerprint() != large.fingerprint()


def test_entry_point_module_source_is_what_runs(tmp_path):
    (tmp_path / "user_inline.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn
        from autobatch import TensorData, Workload
        data = TensorData(torch.zeros(8, 2), torch.zeros(8, dtype=torch.long))
        WORKLOAD = Workload(name="inline", model_factory=lambda: nn.Linear(2, 2),
                            train_data=data, val_data=data)
    """))
    assert load_workload("user_inline:WORKLOAD", app_dir=tmp_path).name == "inline"


def test_digits_keeps_a_fixed_test_split_apart_from_training_and_validation():
    workload = load_workload("digits-cnn")
    train, val, test = workload.train_data, workload.val_data, workload.test_data
    assert (len(train), len(val), len(test)) == (1151, 287, 359)
    seen = {tuple(r.flatten().tolist()) for r in torch.cat([train.x, val.x])}
    unseen = [tuple(r.flatten().tolist()) for r in test.x]
    assert not any(r in seen for r in unseen)
    digits.splits.cache_clear()
    assert torch.equal(load_workload("digits-cnn").test_data.x, test.x)
