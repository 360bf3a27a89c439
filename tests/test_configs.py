"""Every option of every config group composes and builds (through Hydra's compose API, in this process)."""

from __future__ import annotations

import pytest
import torch
from helpers import CONF, check_job, compose_config
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf

from experiments import jobs
from experiments.errors import UserError, build, check_against_hints, check_types, one_line
from experiments.jobs.cluster.check import Plan
from experiments.models.learned_ista import LISTA
from experiments.models.protocols import Classifier, Encoder
from experiments.tracking import RunIdentity, make_logger

GROUPS = ["data", "task", "model", "reducer", "clusterer", "accelerator", "logger", "trainer", "recipe"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


ALL = [(group, option) for group in GROUPS for option in options(group)]


@pytest.mark.parametrize("group, option", ALL, ids=[f"{g}={o}" for g, o in ALL])
def test_every_option_composes_with_a_comment_on_every_key(group, option):
    cfg = compose_config(f"{'+' if group == 'recipe' else ''}{group}={option}", hydra_context=True)  # recipes: added
    assert HydraConfig.get().runtime.choices[group] == option
    target = OmegaConf.load(CONF / group / f"{option}.yaml").get("_target_")
    if target not in (None, "???") and group != "accelerator":  # the option's node is the group's (custom: still to name)
        assert cfg[group]._target_ == target
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    source = (CONF / group / f"{option}.yaml").read_text().splitlines()
    keys = [line for line in source if line and not line.startswith("#") and ":" in line
            and not line.split("#")[0].rstrip().endswith(":")  # a section (problem:), its keys have theirs
            and not line.lstrip().startswith(("-", "defaults"))]
    assert all("#" in line for line in keys), f"every key a user may set has a comment: {keys}"


@pytest.mark.parametrize("option", options("data"))
def test_every_data_option_builds_without_reading_files(option, tmp_path):
    module = instantiate(compose_config(f"data={option}").data)
    assert module.fit_images is None, "constructors do no I/O; setup() loads"


def model_class(option: str) -> type:
    return get_class(OmegaConf.load(CONF / "model" / f"{option}.yaml")._target_)


# The model options task=cluster can train: a new encoder in conf/model/ joins the cases below by itself.
ENCODERS = [m for m in options("model") if m != "custom" and issubclass(model_class(m), Encoder)]
# Each option of each of the three groups once, beside the others' defaults (not all 45 combinations: the
# groups do not interact in the check beyond the code size, which the reducer tests below exercise).
ENCODER_STAGES = sorted({("autoencoder", r, "kmeans") for r in options("reducer")}
                        | {("autoencoder", "tsne", c) for c in options("clusterer")}
                        | {(m, "pca", "gmm") for m in ENCODERS})


@pytest.mark.parametrize("option", [m for m in options("model") if m != "custom"])
def test_every_model_option_is_the_model_of_exactly_one_kind(option):
    cls = model_class(option)
    kinds = [kind for kind, protocol in (("cluster", Encoder), ("classify", Classifier), ("lista", LISTA))
             if issubclass(cls, protocol)]
    assert len(kinds) == 1, (option, kinds)


def test_no_model_option_chooses_another_group_or_carries_a_jobs_settings():
    for option in options("model"):
        node = OmegaConf.load(CONF / "model" / f"{option}.yaml")
        assert "defaults" not in node, f"conf/model/{option}.yaml chooses other groups: a recipe's or a task's work"
        assert not {"task", "trainer", "problem", "features", "encoder"} & set(node), option


@pytest.mark.parametrize("model, reducer, clusterer", ENCODER_STAGES)
def test_every_encoder_reducer_and_clusterer_builds_through_the_cluster_check(model, reducer, clusterer):
    settings = ["data=digits", f"model={model}", f"reducer={reducer}", f"clusterer={clusterer}"]
    if reducer == "pca":
        settings.append("reducer.n_components=8")
    plan = check_job(*settings)
    assert isinstance(plan, Plan) and plan.n_clusters == 10
    # the code size is what encode() returns: the digits' 8x8 pixels for model=pixels
    assert plan.code_size == {"pixels": 64, "sparse_coding": 64, "random_conv": 128, "random_conv_pca": 100,
                              "dense_autoencoder": 10, "random_conv_autoencoder": 10}.get(model, 32)
    assert reducer == "none" or plan.reducer.get_params()["random_state"] == 0


def test_the_classifier_and_lista_build_through_their_checks():
    plan = check_job("task=classify", "data=digits", "data.eval_fraction=0.3")
    assert plan.model.layers[0].in_features == 64 and plan.model.layers[-1].out_features == 10
    check_job("task=lista")
    check_job("+recipe=lista_patches", "data=digits", "task.problem.patch_size=4", "task.problem.atoms=64")
    cfg = compose_config("task=lista")  # what the job builds once the problem has drawn its dictionary
    model = build("model", cfg.model, dictionary=torch.randn(cfg.task.problem.rows, cfg.task.problem.atoms),
                  lam=cfg.task.lam)
    assert model.W.shape == (1, 500, 250) and len(model.theta) == 16


def test_deblur_builds_its_operator_through_its_check():
    plan = check_job("task=deblur", "task.size=64")
    assert plan.shape == (1, 64, 64) and plan.sharp.shape == (64 * 64, 1)


@pytest.mark.parametrize("option", options("task"))
def test_each_task_names_a_job_kind_that_declares_its_score(option):
    cfg = compose_config(f"task={option}")
    kind = jobs.load(cfg.task.kind)
    assert kind.name == cfg.task.kind == option
    score, direction = kind.score(cfg.task.score)
    assert direction in (jobs.MAX, jobs.MIN) and kind.columns[0][1] == score


@pytest.mark.parametrize("task, model, epochs", [("cluster", "autoencoder", 5), ("classify", "mlp", 20),
                                                 ("lista", "lista", 30), ("deblur", None, 5)])
def test_the_task_chooses_its_model_and_trainer_unless_the_command_line_says_otherwise(task, model, epochs):
    cfg = compose_config(f"task={task}", hydra_context=True)
    assert HydraConfig.get().runtime.choices.get("model") == model and cfg.trainer.max_epochs == epochs
    assert ("reducer" in cfg and "clusterer" in cfg) == (task == "cluster"), "only the cluster job reads them"
    chosen = compose_config(f"task={task}", "model=autoencoder", "trainer.max_epochs=2")
    assert chosen.model._target_.endswith("ConvAutoencoder") and chosen.trainer.max_epochs == 2


@pytest.mark.parametrize("option", options("logger"))
def test_every_logger_builds(option, tmp_path):
    cfg = compose_config(f"logger={option}")
    logger = make_logger(cfg.logger, tmp_path, RunIdentity("a run", None, "cluster"), {"seed": 0})
    if cfg.logger.get("_target_") is None:
        assert logger is None  # logger=none
        return
    if option == "wandb":
        assert logger.experiment.job_type == "cluster"
        logger.experiment.finish()
    else:
        assert logger.save_dir == str(tmp_path)


@pytest.mark.parametrize("option", options("trainer"))
def test_every_trainer_builds_as_configured(option):
    cfg = compose_config(f"trainer={option}")
    trainer = instantiate(cfg.trainer, logger=False)
    assert trainer.max_epochs == cfg.trainer.max_epochs == {"default": 5, "classify": 20, "lista": 30}[option]
    assert trainer.gradient_clip_val == cfg.trainer.get("gradient_clip_val")


@pytest.mark.parametrize("option", options("accelerator"))
def test_every_accelerator_merges_into_the_trainer(option):
    cfg = compose_config(f"accelerator={option}")
    assert cfg.trainer.accelerator in ("cpu", "gpu", "auto") and "precision" in cfg.trainer
    if cfg.trainer.accelerator == "gpu" and not torch.cuda.is_available():
        # It asks for the GPU it names rather than falling back to the CPU (built where there is a GPU).
        with pytest.raises(InstantiationException, match="No supported gpu backend found"):
            instantiate(cfg.trainer, logger=False)
        return
    trainer = instantiate(cfg.trainer, logger=False)
    expected = "CUDAAccelerator" if cfg.trainer.accelerator == "gpu" or torch.cuda.is_available() else "CPUAccelerator"
    assert type(trainer.accelerator).__name__ == expected and trainer.precision == cfg.trainer.precision


@pytest.mark.parametrize("sweep", options("sweep"))
def test_every_sweep_composes_and_sweeps_without_dash_m(sweep):
    cfg = compose_config(f"+sweep={sweep}", hydra_context=True)
    hydra_cfg = HydraConfig.get()
    assert hydra_cfg.mode == RunMode.MULTIRUN, "hydra.mode: MULTIRUN, so forgetting -m still sweeps"
    assert hydra_cfg.sweeper.params, "a sweep is its parameters"
    for key in hydra_cfg.sweeper.params:  # each names a config group or a setting the composed config has
        name = key.lstrip("+~")
        assert (CONF / name).is_dir() or OmegaConf.select(cfg, name) is not None, f"{sweep} sweeps {key}: no such setting"


@pytest.mark.parametrize("sweep, direction", [("search", "maximize"), ("search_lista", "minimize")])
def test_an_optuna_search_takes_its_direction_from_the_job_kind(sweep, direction):
    compose_config(f"+sweep={sweep}", hydra_context=True)
    assert HydraConfig.get().sweeper.direction == direction


def test_the_latent_dims_rows_are_nested_under_the_sweep_not_a_top_level_group():
    assert not (CONF / "latent_dims").exists()
    rows = options("sweep/latent_dims")
    assert len(rows) == 10
    cfg = compose_config("+sweep=latent_dims", "+sweep/latent_dims=pca8_latent64")
    assert (cfg.model.latent_dim, cfg.reducer.n_components) == (64, 8)


def test_the_job_is_named_experiments():
    compose_config(hydra_context=True)
    assert HydraConfig.get().job.name == "experiments"


def test_callbacks_a_user_adds_to_the_trainer_join_the_built_in_ones(tmp_path):
    from experiments.data import Digits
    from experiments.models.autoencoder import ConvAutoencoder
    from experiments.training import train_model

    users = tmp_path / "users"
    cfg = compose_config("trainer.max_epochs=1", "trainer.enable_checkpointing=true",
                         f"trainer.callbacks=[{{_target_: pytorch_lightning.callbacks.ModelCheckpoint, dirpath: '{users}'}}]")
    data = Digits(batch_size=512, fit_limit=256, eval_limit=64)
    data.setup()
    history = train_model(cfg.trainer, ConvAutoencoder(data.image_shape), None, tmp_path / "t.ckpt", True,
                          datamodule=data)
    assert list(users.glob("*.ckpt")), "the user's callback ran"
    assert len(history) == 1, "and so did the built-in ones (the per-epoch history)"


def test_copies_of_hydras_config_repository_share_the_config_store_and_loads_still_copy_its_nodes():
    import copy

    import hydra_plugins.hydra_joblib_launcher.config  # noqa: F401  (registers the launcher's structured config)
    from hydra.core.config_store import ConfigStore

    from experiments.hydra_compat import share_config_store

    share_config_store()  # as the entry point does
    store = ConfigStore.instance()
    assert copy.deepcopy(store) is store, "a repository copy no longer copies every plugin's configs"
    loaded = store.load("hydra/launcher/joblib.yaml").node
    loaded.n_jobs = 99
    assert store.load("hydra/launcher/joblib.yaml").node.n_jobs == -1, "a load is still the caller's own copy"
    # and a composed config with structured configs is what it was
    compose_config("hydra/launcher=joblib", hydra_context=True)
    assert HydraConfig.get().launcher.n_jobs == -1


def test_a_library_error_in_a_constructor_is_one_line_naming_the_class_it_was_building():
    cfg = compose_config("data=digits", "model.latent_dim=abc")
    with pytest.raises(InstantiationException) as caught:
        instantiate(cfg.model, image_shape=(1, 8, 8))
    named = one_line(caught.value, name_target=True)  # as `python -m experiments` prints it
    assert named.startswith("ConvAutoencoder: TypeError: '<' not supported between instances of ")
    assert named.endswith(one_line(caught.value))


@pytest.mark.parametrize(
    "value, kind, refused",
    [(3, "whole", False), (True, "whole", True), (1.0, "whole", True), ("3", "whole", True), (None, "whole", False),
     (3, "real", False), (0.5, "real", False), (False, "real", True), ("abc", "real", True),
     (True, "flags", False), (1, "flags", True), ("yes", "flags", True)],
)
def test_a_setting_of_the_wrong_type_is_one_line_naming_it(value, kind, refused):
    # True is an int to Python and 1 is not a flag; null is left to the range checks (it often means "default")
    settings = OmegaConf.create({"x": value})
    if refused:
        with pytest.raises(UserError, match=r"^group\.x=.*: use (a whole number|a number|true or false)$"):
            check_types(settings, "group", **{kind: ["x"]})
    else:
        check_types(settings, "group", **{kind: ["x"]})


class HintedModel:
    """A user's own model: its constructor's hints are all the check needs."""

    def __init__(self, width: int, rate: float = 0.1, sizes: tuple[int, ...] = (8,), limit: int | None = None,
                 norm: bool = True, name: str = "mine") -> None:
        pass


class HintedSubclass(HintedModel):
    def __init__(self, depth: int = 2, **kwargs) -> None:  # the base's settings pass through **kwargs
        super().__init__(**kwargs)


@pytest.mark.parametrize(
    "settings, message",
    [({"width": "abc"}, "x.width='abc': use a whole number"), ({"rate": "fast"}, "x.rate='fast': use a number"),
     ({"sizes": "abc"}, r"x.sizes='abc': use a list of whole numbers"),
     ({"sizes": [8, 2.5]}, r"x.sizes=\[8, 2.5\]: use a list of whole numbers"),
     ({"limit": "none"}, "x.limit='none': use a whole number"), ({"norm": "yes"}, "x.norm='yes': use true or false"),
     ({"depth": 1.5}, "x.depth=1.5: use a whole number")],
)
def test_settings_are_checked_against_the_constructors_type_hints_and_its_bases(settings, message):
    with pytest.raises(UserError, match=message):
        check_against_hints(OmegaConf.create({"width": 4, **settings}), "x", HintedSubclass)


def test_settings_that_fit_their_hints_or_have_none_pass():
    fine = {"width": 4, "rate": 1, "sizes": [8, 16], "limit": None, "norm": False, "name": 3, "unhinted": "anything"}
    check_against_hints(OmegaConf.create(fine), "x", HintedSubclass)  # an int is a float; str and unknown keys: left
    for group in ("model", "data"):  # every option's defaults fit their constructors' hints
        for option in options(group):
            if (group, option) == ("model", "custom"):
                continue  # a target still to name
            node = compose_config(f"{group}={option}")[group]
            check_against_hints(node, group, get_class(node._target_))  # (data=npy's MISSING paths: str hints)
