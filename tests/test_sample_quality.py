import pytest
import torch

from vaelib.data.datasets import load_dataset
from vaelib.evaluation import sample_quality as Q
from vaelib.models import classifier as C


@pytest.fixture(scope="module")
def mnist():
    return C.load_classifier("mnist"), load_dataset("mnist", "train"), load_dataset("mnist", "test")


def test_the_shipped_mnist_classifier_reads_held_out_digits(mnist):
    model, _, test = mnist
    assert C.accuracy(model, test)["class"] >= 0.97  # the 500 test digits, never seen in training
    assert model.features(test.images[:7]).shape == (7, C.FEATURES)


def test_the_shipped_shapes_classifier_reads_every_factor():
    model = C.load_classifier("shapes")
    acc = C.accuracy(model, load_dataset("shapes", "test", n=1000))
    assert set(acc) == {"shape", "colour", "scale", "x", "y", "rotation"}
    assert acc["colour"] > 0.99 and acc["x"] > 0.99 and acc["y"] > 0.99 and acc["shape"] > 0.6
    assert model.names[C.coverage_head(model, "shapes")] == "colour"  # what class coverage reads on shapes
    assert model.names[model.coverage] == "colour"  # and what it reads by default, from the shipped classifier
    images = load_dataset("shapes", "test", n=400)
    one_colour = images.images[images.factors[:, images.factor_names.index("colour")] == 0]
    assert Q.class_coverage(model, one_colour)["classes_hit"] == 1  # one colour: one class hit, whatever the shapes


def test_training_is_deterministic_and_refuses_a_split_without_targets():
    split = load_dataset("digits", "train")
    small = type(split)(split.images[:256], split.labels[:256], None)
    a = C.train_classifier(small, epochs=1, batch_size=64)
    b = C.train_classifier(small, epochs=1, batch_size=64)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    with pytest.raises(ValueError, match="allowed a split with class labels or factors"):
        C.train_classifier(type(split)(split.images[:64], None, None))


def test_frechet_distance_orders_real_blurred_and_noise(mnist):
    model, train, test = mnist
    pick = torch.randperm(len(train.images), generator=torch.Generator().manual_seed(0))[:1000]  # the split is sorted
    fd_train = Q.frechet_distance(model, test.images, train.images[pick])  # by class: never take its first n
    blurred = torch.nn.functional.avg_pool2d(test.images.float() / 255, 3, 1, 1)
    fd_blur = Q.frechet_distance(model, test.images, blurred)
    noise = torch.rand(500, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    fd_noise = Q.frechet_distance(model, test.images, noise)
    assert fd_train < fd_blur < fd_noise and fd_train < 0.05 * fd_noise


def test_precision_recall_density_coverage_on_known_sets():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(400, 4, generator=g)
    same = Q.precision_recall(real, torch.randn(400, 4, generator=g))
    far = Q.precision_recall(real, torch.randn(400, 4, generator=g) + 10)
    narrow = Q.precision_recall(real, 0.1 * torch.randn(400, 4, generator=g))  # all near the centre: no spread
    assert same["precision"] > 0.8 and same["recall"] > 0.8 and 0.6 < same["density"] < 1.4
    assert far["precision"] == far["recall"] == far["coverage"] == 0.0
    assert narrow["precision"] > 0.9 and narrow["recall"] < 0.3
    with pytest.raises(ValueError, match="k=5 is invalid"):
        Q.precision_recall(real[:5], real[:5])


def test_class_coverage_counts_the_digits_samples_hit(mnist):
    model, _, test = mnist
    every = Q.class_coverage(model, test.images)
    ones = Q.class_coverage(model, test.images[test.labels == 1])
    assert every["classes_hit"] == 10 and every["class_evenness"] > 0.95
    assert ones["classes_hit"] == 1 and ones["class_evenness"] < 0.2


def test_sample_quality_of_a_model_reads_its_prior_samples(mnist, tiny_config):
    from vaelib.models.vae import VAE

    model, _, test = mnist
    torch.manual_seed(0)
    vae = VAE(tiny_config.__class__(**{**tiny_config.__dict__, "data": tiny_config.data.__class__(
        dataset="mnist", image_size=32, channels=1)})).eval()
    q = Q.sample_quality(vae, model, test.images, n=200, seed=0)
    assert set(q) == {"fd", "precision", "recall", "density", "coverage", "classes_hit", "class_evenness"}
    real = load_dataset("mnist", "train").images
    pick = torch.randperm(len(real), generator=torch.Generator().manual_seed(0))[:500]
    assert q["fd"] > Q.frechet_distance(model, test.images, real[pick])  # an untrained decoder samples badly
    assert Q.sample_quality(vae, model, test.images, n=200, seed=0) == q  # the same seed, the same samples
