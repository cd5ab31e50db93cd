"""The built-in model's training code, at a tiny configuration (seconds)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from mrflow_daemon.builtin.config import get_config
from mrflow_daemon.builtin.models import LOCAL_WINDOWS, make_pipeline, make_t5_tokenizer
from mrflow_daemon.builtin.train import UPSCALER_FILE, Trainer


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("train")
    Trainer(get_config("tiny"), out, progress=False).run(quick_check=0)
    return out


def test_tiny_training_writes_a_flux_folder_and_summary(trained: Path) -> None:
    model = trained / "model"
    index = json.loads((model / "model_index.json").read_text())
    assert index["_class_name"] == "FluxPipeline"
    assert (model / UPSCALER_FILE).is_file()
    assert (
        json.loads((model / "transformer" / "config.json").read_text())["guidance_embeds"] is True
    )
    vae = json.loads((model / "vae" / "config.json").read_text())
    assert vae["latent_channels"] == 16
    assert len(vae["block_out_channels"]) == 4  # 8x downsampling
    assert vae["scaling_factor"] != 1.0  # measured from the trained VAE's latents
    summary = json.loads((trained / "summary.json").read_text())
    for part in ("vae", "upscaler", "text", "transformer"):
        assert summary["parts"][part]["steps"] == 3
        assert summary["parts"][part]["final_loss"] > 0
    assert "gt_pass_after_vae" in summary["parts"]["vae"]["metrics"]
    assert "bicubic_psnr_db" in summary["parts"]["upscaler"]["metrics"]
    assert set(summary["parts"]["text"]["metrics"]) == {"token_accuracy", "scene_accuracy"}
    sensitivity = summary["parts"]["transformer"]["metrics"]["caption_sensitivity"]
    assert set(sensitivity) == {"position", "colour", "kind", "background"}


def test_weights_are_saved_in_fp16(trained: Path) -> None:
    from safetensors import safe_open

    with safe_open(
        str(trained / "model" / "transformer" / "diffusion_pytorch_model.safetensors"), "pt"
    ) as f:
        assert f.get_tensor(next(iter(f.keys()))).dtype == torch.float16
    with safe_open(str(trained / "model" / UPSCALER_FILE), "pt") as f:
        assert "body.0.weight" in set(
            f.keys()
        )  # the key naming spandrel detects as Real-ESRGAN Compact


def test_resume_loads_finished_parts_instead_of_retraining(trained: Path) -> None:
    before = (trained / "checkpoints" / "transformer.pt").stat().st_mtime_ns
    trainer = Trainer(get_config("tiny"), trained, progress=False, resume=True)
    trainer.train_vae()
    trainer.train_upscaler()
    trainer.train_text()
    trainer.train_transformer()
    assert all(state.step == 3 and state.done for state in trainer.states.values())
    assert (trained / "checkpoints" / "transformer.pt").stat().st_mtime_ns == before


def test_a_resumed_run_does_not_log_the_same_steps_twice(tmp_path: Path) -> None:
    Trainer(get_config("tiny"), tmp_path, progress=False).train_vae()  # checkpoint at step 3
    log = tmp_path / "train_log.jsonl"
    kept = ['{"part": "vae", "step": 3, "loss": 0.5}', '{"part": "text", "step": 9, "loss": 0.1}']
    # The run went on past its last checkpoint before it stopped, to step 5:
    log.write_text("\n".join([*kept, '{"part": "vae", "step": 5, "loss": 0.4}']) + "\n")
    resumed = Trainer(get_config("tiny"), tmp_path, progress=False, resume=True)
    resumed.train_vae()  # loads the checkpoint: steps 4 and 5 are trained and logged again
    assert log.read_text().splitlines() == kept


def test_reuse_parts_trains_only_a_new_transformer(trained: Path, tmp_path: Path) -> None:
    """The VAE, upscaler and text encoders come from the exported model (fp16, as shipped);
    the transformer starts fresh and trains; a resumed run keeps the reused parts."""
    from safetensors.torch import load_file

    exported = trained / "model"
    trainer = Trainer(get_config("tiny"), tmp_path, progress=False, reuse_parts=exported)
    trainer.run(quick_check=0)
    for part in ("vae", "upscaler", "text"):
        assert trainer.states[part].step == 0
        assert trainer.states[part].metrics == {"reused_from": str(exported)}
    assert trainer.states["transformer"].step == 3
    vae_state = load_file(str(exported / "vae" / "diffusion_pytorch_model.safetensors"))
    for name, tensor in trainer.pipe.vae.state_dict().items():
        assert torch.equal(tensor, vae_state[name].float()), name
    shipped_vae = json.loads((exported / "vae" / "config.json").read_text())
    new_vae = json.loads((tmp_path / "model" / "vae" / "config.json").read_text())
    assert new_vae["scaling_factor"] == pytest.approx(shipped_vae["scaling_factor"])
    upscaler_state = load_file(str(exported / UPSCALER_FILE))
    for name, tensor in trainer.upscaler.state_dict().items():
        assert torch.equal(tensor, upscaler_state[name].float()), name
    # A fresh transformer, not the exported one.
    old = load_file(str(exported / "transformer" / "diffusion_pytorch_model.safetensors"))
    new = load_file(str(tmp_path / "model" / "transformer" / "diffusion_pytorch_model.safetensors"))
    assert any(not torch.equal(old[k], new[k]) for k in old)

    resumed = Trainer(get_config("tiny"), tmp_path, progress=False, resume=True)
    resumed.train_vae()
    assert resumed.states["vae"].metrics == {"reused_from": str(exported)}
    for name, tensor in resumed.pipe.vae.state_dict().items():
        assert torch.equal(tensor, vae_state[name].float()), name


def test_continue_transformer_starts_from_the_exported_transformer(
    trained: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    exported = trained / "model"
    trainer = Trainer(
        get_config("tiny"),
        tmp_path,
        progress=False,
        reuse_parts=exported,
        continue_transformer=True,
    )
    old = load_file(str(exported / "transformer" / "diffusion_pytorch_model.safetensors"))
    for name, tensor in trainer.pipe.transformer.state_dict().items():
        assert torch.equal(tensor, old[name].float()), name
    trainer.train_transformer()
    assert trainer.states["transformer"].step == 3
    assert trainer.states["transformer"].metrics["continued_from"] == str(exported)
    with pytest.raises(ValueError, match="continue_transformer needs reuse_parts"):
        Trainer(get_config("tiny"), tmp_path, progress=False, continue_transformer=True)


def test_reuse_parts_rejects_a_model_of_other_sizes(trained: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"its vae does not match config 'cpu'"):
        Trainer(get_config("cpu"), tmp_path, progress=False, reuse_parts=trained / "model")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--continue-transformer"], r"--continue-transformer needs --reuse-parts"),
        (["--data-pool", "-1"], r"--data-pool must be 0 or a positive number of steps, got -1"),
        (["--time-budget", "nan"], r"--time-budget must be a positive, finite number .* got nan"),
        (["--time-budget", "inf"], r"--time-budget must be a positive, finite number .* got inf"),
        (["--quick-check", "-1"], r"--quick-check must be 0 \(skip\) or more prompts, got -1"),
        (["--device", "gpu0"], r"--device: 'gpu0' is not a torch device; allowed: cpu, cuda"),
        (["--device", "meta"], r"--device: training runs on cpu or cuda\[:N\], not 'meta'"),
    ],
)
def test_train_command_rejects_bad_transformer_options(argv: list[str], message: str) -> None:
    command, args = _train_command_args("--config", "tiny", *argv)
    with pytest.raises(SystemExit, match=message):
        command.run(args)


def test_train_command_rejects_reuse_parts_that_is_no_model(tmp_path: Path) -> None:
    command, args = _train_command_args(
        "--config", "tiny", "--reuse-parts", str(tmp_path), "--out", str(tmp_path / "run")
    )
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "train_log.jsonl").write_text("the previous run's log\n")
    with pytest.raises(SystemExit, match=r"--reuse-parts: .* is not an exported model folder"):
        command.run(args)
    assert (tmp_path / "run" / "train_log.jsonl").is_file()  # a typo costs nothing


def test_train_command_names_the_part_of_another_size(trained: Path, tmp_path: Path) -> None:
    command, args = _train_command_args(
        "--config", "cpu", "--reuse-parts", str(trained / "model"), "--out", str(tmp_path)
    )
    (tmp_path / "train_log.jsonl").write_text("the previous run's log\n")
    with pytest.raises(SystemExit, match=r"--reuse-parts: .*its vae does not match config 'cpu'"):
        command.run(args)
    assert (tmp_path / "train_log.jsonl").is_file()  # a wrong model costs nothing


def test_a_fresh_run_in_an_old_run_folder_drops_its_checkpoints(
    trained: Path, tmp_path: Path
) -> None:
    shutil.copytree(trained / "checkpoints", tmp_path / "checkpoints")
    assert sorted(p.stem for p in (tmp_path / "checkpoints").glob("*.pt")) == [
        "text",
        "transformer",
        "upscaler",
        "vae",
    ]
    trainer = Trainer(get_config("tiny"), tmp_path, progress=False)  # no --resume
    assert list((tmp_path / "checkpoints").glob("*.pt")) == []
    # so a later --resume of this run cannot load the old run's parts as finished
    trainer.train_vae()
    resumed = Trainer(get_config("tiny"), tmp_path, progress=False, resume=True)
    resumed.train_upscaler()
    assert resumed.states["upscaler"].metrics.get("reused_from") is None
    assert resumed.states["upscaler"].step == 3  # trained now, not loaded


def test_resuming_with_other_settings_is_refused_naming_them(trained: Path, tmp_path: Path) -> None:
    from mrflow_daemon.builtin.train import ResumeMismatch

    shutil.copytree(trained / "checkpoints", tmp_path / "checkpoints")
    config = get_config("tiny")
    other = replace(config, seed=5, transformer=replace(config.transformer, kind_loss_weight=2.0))
    trainer = Trainer(other, tmp_path, progress=False, resume=True)
    with pytest.raises(ResumeMismatch, match=r"its vae was trained with seed 0 \(now 5\)"):
        trainer.train_vae()
    with pytest.raises(ResumeMismatch, match=r"kind_loss_weight 0.0 \(now 2.0\), seed 0"):
        trainer.train_transformer()
    # How the model is sampled (its card) is not how it trained: that may change on resume.
    sampled = replace(config.transformer, true_cfg_scale=3.0, refine_sigma=0.5)
    Trainer(
        replace(config, transformer=sampled), tmp_path, progress=False, resume=True
    ).train_transformer()


def test_training_is_seeded(tmp_path: Path) -> None:
    losses = []
    for run in ("a", "b"):
        trainer = Trainer(get_config("tiny"), tmp_path / run, progress=False)
        trainer.train_vae()
        losses.append(trainer.states["vae"].losses)
    assert losses[0] == losses[1]


def test_t5_tokenizer_reads_words_not_letters() -> None:
    tokenizer = make_t5_tokenizer(32)
    ids = tokenizer(
        "a red circle on the left and a blue square at the top, grey background"
    ).input_ids
    assert len(ids) == 17  # 15 words, the comma, </s>
    assert tokenizer.model_max_length == 32


@pytest.mark.parametrize("config", ["tiny", "cpu"])
def test_t5_starts_with_local_attention(config: str) -> None:
    """Each head's position bias favours its window of neighbouring words, so a colour word and
    its shape and position words mix from the first step (a uniform start loses word order)."""
    torch.manual_seed(0)
    t5 = make_pipeline(get_config(config)).text_encoder_2
    attention = t5.encoder.block[0].layer[0].SelfAttention
    length = 20
    bias = attention.compute_bias(length, length)[0]  # [heads, query, key]
    query = 10
    for head in range(bias.shape[0]):
        window = [query + o for o in LOCAL_WINDOWS[head % len(LOCAL_WINDOWS)]]
        # T5 buckets offsets beyond 3 logarithmically (4-6 share one): allow 2 words of spill.
        near = [k for k in range(length) if min(abs(k - w) for w in window) <= 2]
        far = [k for k in range(length) if k not in near]
        assert bias[head, query, window].min() > bias[head, query, far].max() + 2.0
        weights = bias[head, query].softmax(-1)
        assert weights[window].min() > 5 * weights[far].max()


def test_engine_loads_and_runs_the_trained_folder(trained: Path) -> None:
    engine_module = pytest.importorskip("mrflow_daemon.engine.pipeline")
    from mrflow_daemon.engine.request import GenerationRequest

    engine = engine_module.MrFlowEngine.from_pretrained(
        trained / "model", device="cpu", upscaler=trained / "model" / UPSCALER_FILE
    )
    assert engine.family == "flux-dev"
    result = engine.generate(
        GenerationRequest(
            "a red circle on the left, grey background", 64, 64, preset="paper", steps=2, seed=1
        )
    )
    assert result.image.size == (64, 64)
    engine.unload()


def test_eval_writes_results_and_grid(trained: Path, tmp_path: Path) -> None:
    pytest.importorskip("mrflow_daemon.engine.pipeline")
    from mrflow_daemon.builtin.evaluate import evaluate, format_table

    results = evaluate(
        trained / "model", n=2, presets=["native", "paper"], out_dir=tmp_path, device="cpu"
    )
    assert json.loads((tmp_path / "results.json").read_text()) == results
    assert (tmp_path / "grid.png").is_file()
    rows = results["rows"]
    assert list(rows) == ["ground_truth", "vae", "native", "paper"]
    assert rows["ground_truth"]["all_checks_pass"] == 1.0
    assert rows["paper"]["n"] == 2
    from mrflow_daemon.builtin.world import eval_cases

    two_shapes = [len(case.scene.shapes) == 2 for case in eval_cases(2)]
    assert rows["native"]["two_shapes"]["n"] == sum(two_shapes)
    cases = results["cases"]
    assert [c["caption"] for c in cases] == [c.caption for c in eval_cases(2)]
    assert all(c["failed"]["ground_truth"] == [] for c in cases)
    native_passes = sum(not c["failed"]["native"] for c in cases)
    assert native_passes == round(rows["native"]["all_checks_pass"] * 2)
    paired = results["against_native"]["paper"]
    assert paired["speedup"] > 0
    low, high = paired["difference_ci95_pp"]
    assert low <= paired["difference_pp"] <= high
    assert rows["paper"]["refine_sigma"] == 0.12 and rows["native"]["refine_sigma"] is None
    assert rows["paper"]["refine_steps"] == 1 and rows["native"]["refine_steps"] is None
    # The low-res stage is checked on its own for the staged row: per case, summed, and paired.
    assert rows["native"]["upscaled"] is None and rows["paper"]["upscaled"]["n"] == 2
    upscaled = [c["upscaled_passed"]["paper"] for c in cases]
    assert all(isinstance(ok, bool) for ok in upscaled)
    assert all("native" not in c["upscaled_passed"] for c in cases)
    assert rows["paper"]["upscaled"]["all_checks_pass"] == sum(upscaled) / 2
    assert paired["only_native_passes"] == (
        paired["only_native_passes_upscaled_failed"] + paired["only_native_passes_upscaled_passed"]
    )
    assert "its low-res stage alone" in format_table(results)
    assert "paper (refine sigma 0.12) vs native" in format_table(results)


def test_eval_guidance_and_refine_options_reach_every_generation(
    trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("mrflow_daemon.engine.pipeline")
    from mrflow_daemon.builtin.evaluate import evaluate, format_table
    from mrflow_daemon.engine.pipeline import MrFlowEngine

    seen: list[tuple[float | None, float | None, int | None]] = []
    real_generate = MrFlowEngine.generate

    def spy(self: MrFlowEngine, request: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append((request.guidance, request.refine_sigma, request.refine_steps))
        return real_generate(self, request, *args, **kwargs)

    monkeypatch.setattr(MrFlowEngine, "generate", spy)
    results = evaluate(
        trained / "model",
        n=1,
        presets=["native", "paper"],
        out_dir=tmp_path,
        device="cpu",
        guidance=1.0,
        refine_sigma=0.2,
        refine_steps=2,
    )
    assert seen == [(1.0, None, None)] * 2 + [(1.0, 0.2, 2)] * 2  # warm-up and case, per preset
    assert results["guidance"] == 1.0 and results["refine_sigma"] == 0.2
    assert results["refine_steps"] == 2
    paper = results["rows"]["paper"]
    assert (paper["refine_sigma"], paper["refine_steps"]) == (0.2, 2)
    assert results["rows"]["native"]["refine_steps"] is None
    assert "paper (refine sigma 0.2, 2 steps) vs native" in format_table(results)


def test_eval_samples_at_the_model_cards_refine_sigma(trained: Path, tmp_path: Path) -> None:
    from mrflow_daemon.builtin.evaluate import evaluate

    model = tmp_path / "model"
    shutil.copytree(trained / "model", model)
    card = json.loads((model / "builtin.json").read_text())
    (model / "builtin.json").write_text(json.dumps({**card, "refine_sigma": 0.3}))
    results = evaluate(model, n=1, presets=["paper"], out_dir=tmp_path / "eval", device="cpu")
    assert results["refine_sigma"] is None  # no --refine-sigma given
    assert results["rows"]["paper"]["refine_sigma"] == 0.3


def test_eval_can_reuse_an_earlier_runs_native_row(trained: Path, tmp_path: Path) -> None:
    from mrflow_daemon.builtin.evaluate import NativeFromError, evaluate

    model = trained / "model"
    first = evaluate(model, n=2, presets=["native", "paper"], out_dir=tmp_path / "a", device="cpu")
    earlier = tmp_path / "a" / "results.json"
    second = evaluate(
        model, n=2, presets=["paper"], out_dir=tmp_path / "b", device="cpu", native_from=earlier
    )
    assert "native" not in second["rows"] and second["native_from"] == str(earlier)
    paired = ("both_pass", "only_native_passes", "only_this_passes", "difference_pp")
    for key in paired:  # paper is seeded: the same pairs, the same comparison
        assert second["against_native"]["paper"][key] == first["against_native"]["paper"][key]
    with pytest.raises(NativeFromError, match="leave native out"):
        evaluate(model, n=2, presets=["native"], out_dir=tmp_path / "c", native_from=earlier)
    with pytest.raises(NativeFromError, match="other pairs than --n 3"):
        evaluate(model, n=3, presets=["paper"], out_dir=tmp_path / "c", native_from=earlier)
    elsewhere = json.loads(earlier.read_text())
    elsewhere["device"] = "cuda:0"  # a native row timed on another machine
    (tmp_path / "gpu.json").write_text(json.dumps(elsewhere))
    with pytest.raises(NativeFromError, match="was run with device 'cuda:0', not 'cpu'"):
        evaluate(
            model, n=2, presets=["paper"], out_dir=tmp_path / "d", native_from=tmp_path / "gpu.json"
        )
    assert first["scenes"] == 2  # held-out scenes, in either phrasing


def test_an_extended_eval_equals_one_run_over_all_pairs(
    trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mrflow_daemon.builtin.evaluate import ExtendError, NativeFromError, evaluate
    from mrflow_daemon.engine.pipeline import MrFlowEngine

    model, presets = tmp_path / "model", ["native", "paper"]
    shutil.copytree(trained / "model", model)
    whole = evaluate(model, n=3, presets=presets, out_dir=tmp_path / "whole", device="cpu")
    evaluate(model, n=1, presets=presets, out_dir=tmp_path / "part", device="cpu")
    part = tmp_path / "part" / "results.json"
    prompts: list[str] = []
    real_generate = MrFlowEngine.generate

    def counting(self: MrFlowEngine, request: Any, *args: Any, **kwargs: Any) -> Any:
        prompts.append(request.prompt)
        return real_generate(self, request, *args, **kwargs)

    monkeypatch.setattr(MrFlowEngine, "generate", counting)
    extended = evaluate(
        model, n=3, presets=presets, out_dir=tmp_path / "ext", device="cpu", extend=part
    )
    assert len(prompts) == 2 * (1 + 2)  # per preset: a warm-up and the two new pairs only
    assert extended["extended_from"] == {"results": str(part), "n": 1}
    earlier = json.loads(part.read_text())["cases"][0]
    assert extended["cases"][0] == earlier  # the reused pair, times included, as recorded
    assert extended["scenes"] == whole["scenes"]
    for ours, theirs in zip(extended["cases"], whole["cases"], strict=True):
        del ours["seconds"], theirs["seconds"]
        assert ours == theirs  # seeded: the same checks and edge widths, reused or sampled now
    for name, row in whole["rows"].items():
        for key in ("n", "all_checks_pass", "per_check", "edge_width_px_median", "refine_sigma"):
            assert extended["rows"][name][key] == row[key]
    for key in ("both_pass", "only_native_passes", "only_this_passes"):
        assert extended["against_native"]["paper"][key] == whole["against_native"]["paper"][key]
    for kwargs, message in (
        ({"n": 1}, r"already has 1 pairs; give --n above that"),
        ({"presets": ["paper", "native"]}, r"extend it with --presets native,paper"),
        ({"guidance": 1.0}, r"was run with guidance None, not 1.0"),
        ({"refine_sigma": 0.3}, r"was run with refine_sigma None, not 0.3"),
        ({"refine_steps": 2}, r"was run with refine_steps None, not 2"),
        ({"upscaler": "other.safetensors"}, r"was run with upscaler None, not 'other.safetensors'"),
        ({"native_from": part}, r"give --extend or --native-from, not both"),
        ({"out_dir": tmp_path / "part"}, r"is in the output folder"),
    ):
        options = {"n": 3, "presets": presets, "out_dir": tmp_path / "bad", **kwargs}
        with pytest.raises(ExtendError, match=message):
            evaluate(model, device="cpu", extend=part, **options)
    with pytest.raises(NativeFromError, match="is in the output folder"):
        evaluate(model, n=1, presets=["paper"], out_dir=tmp_path / "part", native_from=part)
    # New weights or a new card behind the same path: the earlier pairs are not this model's.
    original = (model / "builtin.json").read_bytes()
    card = json.loads(original)
    (model / "builtin.json").write_text(json.dumps({**card, "refine_sigma": 0.3}))
    with pytest.raises(ExtendError, match="was run with other weights or card"):
        evaluate(model, n=3, presets=presets, out_dir=tmp_path / "bad", device="cpu", extend=part)
    old = json.loads(part.read_text())
    del old["model_fingerprint"]  # as runs before 2026-11-27 wrote them: the card is not seen,
    (tmp_path / "unprinted.json").write_text(json.dumps(old))  # but the sigma it gave is
    with pytest.raises(
        ExtendError, match=r"paper row was refined from sigma 0.12, this run's from 0.3"
    ):
        evaluate(
            model,
            n=3,
            presets=presets,
            out_dir=tmp_path / "bad",
            extend=tmp_path / "unprinted.json",
        )
    for case in old["cases"]:  # as runs before per-pair times were kept wrote them
        del case["seconds"], case["edge_px"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    with pytest.raises(ExtendError, match="does not keep each pair's edge width and time"):
        evaluate(
            model, n=3, presets=presets, out_dir=tmp_path / "bad", extend=tmp_path / "old.json"
        )
    (model / "builtin.json").write_bytes(original)  # the weights the runs were made with
    swept = evaluate(
        model, n=1, presets=["paper"], out_dir=tmp_path / "swept", device="cpu", native_from=part
    )
    assert swept["native_from"] == str(part)
    with pytest.raises(ExtendError, match=r"took its native row from another run"):
        evaluate(
            model,
            n=2,
            presets=["paper"],
            out_dir=tmp_path / "bad",
            extend=tmp_path / "swept" / "results.json",
        )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--n", "0"], r"--n must be at least 1"),
        (["--guidance", "101"], r"--guidance must be between 0 and 100, not 101"),
        (["--refine-sigma", "0"], r"--refine-sigma must be between 0.0001 and 1, not 0"),
        (["--refine-sigma", "5e-05"], r"--refine-sigma must be between 0.0001 and 1, not 5e-05"),
        (["--refine-steps", "0"], r"--refine-steps must be between 1 and 50, not 0"),
        (["--presets", "native,fastest"], r"--presets: .*fastest"),
        (["--presets", "paper,native,paper"], r"--presets: name each preset once; .*: paper"),
        (["--model", "/no/such/model"], r"--model: .*/no/such/model"),
    ],
)
def test_eval_command_rejects_bad_arguments(argv: list[str], message: str) -> None:
    import argparse

    from mrflow_daemon.commands import eval as command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    with pytest.raises(SystemExit, match=message):
        command.run(parser.parse_args(argv))


def test_a_non_finite_loss_skips_the_update(tmp_path: Path) -> None:
    trainer = Trainer(get_config("tiny"), tmp_path, progress=False)
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.SGD([weight], lr=1.0)
    assert trainer._apply((weight * float("nan")).sum(), optimizer, [weight], 1.0) is None
    assert torch.equal(weight.detach(), torch.ones(3))
    assert trainer._apply((weight * 2).sum(), optimizer, [weight], 0.1) == 6.0
    assert not torch.equal(weight.detach(), torch.ones(3))


def test_a_part_that_fails_still_yields_a_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trainer = Trainer(get_config("tiny"), tmp_path, progress=False)

    def out_of_memory(*args: object, **kwargs: object) -> None:
        raise torch.OutOfMemoryError("pretend the device is full")

    monkeypatch.setattr(trainer, "encode_captions", out_of_memory)
    summary = trainer.run(quick_check=0)
    assert "OutOfMemoryError" in summary["parts"]["transformer"]["error"]
    assert summary["parts"]["transformer"]["steps"] == 0
    assert (tmp_path / "model" / "model_index.json").is_file()


def test_upscaler_weights_load_in_spandrel_and_compute_the_same(tmp_path: Path) -> None:
    spandrel = pytest.importorskip("spandrel")
    from mrflow_daemon.builtin.upscaler_net import CompactUpscaler
    from safetensors.torch import save_file

    torch.manual_seed(0)
    ours = CompactUpscaler(num_feat=8, num_conv=2).eval()
    save_file(ours.state_dict(), str(tmp_path / "up.safetensors"))
    loaded = spandrel.ModelLoader().load_from_file(str(tmp_path / "up.safetensors"))
    assert loaded.architecture.id == "Compact"
    assert loaded.scale == 2
    x = torch.rand(1, 3, 16, 24)
    with torch.no_grad():
        assert torch.allclose(loaded.model(x), ours(x), atol=1e-6)


def test_cpu_config_is_selectable_and_sized_for_two_cores() -> None:
    config = get_config("cpu")
    assert config.name == "cpu"
    assert config.vae.crop > 0 and not config.vae.mid_attention
    assert config.transformer.data_pool > 0
    # The shipped weights are sampled with true CFG: the recipe must train the empty caption.
    assert config.transformer.caption_dropout == 0.1
    assert config.transformer.kind_loss_weight == 0.5
    head_dim = config.transformer.attention_head_dim
    assert sum(config.transformer.axes_dims_rope) == head_dim
    assert sum(config.time_shares) < 1.0  # leaves time for export and checks


def test_gpu_sizing_grows_batches_and_draws_fresh_pictures() -> None:
    from mrflow_daemon.builtin.config import for_gpu

    cpu = get_config("cpu")
    gpu = for_gpu(cpu)
    assert gpu.transformer.batch_size == 16 * cpu.transformer.batch_size
    assert gpu.transformer.lr == 2 * cpu.transformer.lr
    assert gpu.transformer.data_pool == 0  # encoding is cheap on a GPU: no reused pool
    assert gpu.vae.batch_size == 4 * cpu.vae.batch_size
    # Architecture untouched: a GPU-trained transformer loads where the CPU one does.
    assert gpu.transformer.attention_head_dim == cpu.transformer.attention_head_dim
    assert gpu.vae.block_out_channels == cpu.vae.block_out_channels


def test_crop_batch_cuts_square_patches_near_shapes() -> None:
    import random

    from mrflow_daemon.builtin.data import crop_batch, training_batch

    batch = training_batch(random.Random(0), (256, 256), 4, "cpu")
    patches = crop_batch(random.Random(1), batch, 64, near_shape=1.0)
    assert patches.shape == (4, 3, 64, 64)
    # Centred near a shape: every patch holds more than one colour.
    assert all(p.flatten(1).std(dim=1).max() > 0.05 for p in patches)


def test_patch_training_and_data_pool_run(tmp_path: Path) -> None:
    from dataclasses import replace

    tiny = get_config("tiny")
    config = replace(
        tiny,
        vae=replace(tiny.vae, steps=4, crop=32, whole_fraction=0.5, mid_attention=False),
        transformer=replace(tiny.transformer, steps=4, data_pool=2),
        upscaler=replace(tiny.upscaler, crop=32),
    )
    summary = Trainer(config, tmp_path, progress=False).run(quick_check=0)
    assert summary["parts"]["transformer"]["steps"] == 4
    assert all(summary["parts"][p]["error"] is None for p in ("vae", "upscaler", "transformer"))
    vae = json.loads((tmp_path / "model" / "vae" / "config.json").read_text())
    assert vae["mid_block_add_attention"] is False


def test_finish_phase_trains_on_fresh_square_pictures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before the finish phase, the pool's batches; during it, fresh batches of the two square
    sizes only."""
    from dataclasses import replace

    from mrflow_daemon.builtin import train
    from mrflow_daemon.builtin.config import HIGH_BUCKETS, LOW_BUCKETS, FinishPhase

    drawn: list[tuple[int, int]] = []
    real_batch = train.training_batch

    def recording_batch(rng, size, batch_size, device):  # type: ignore[no-untyped-def]
        drawn.append(size)
        return real_batch(rng, size, batch_size, device)

    monkeypatch.setattr(train, "training_batch", recording_batch)
    tiny = get_config("tiny")
    steps, share = 40, 0.5
    config = replace(
        tiny,
        transformer=replace(
            tiny.transformer, steps=steps, data_pool=4, finish=FinishPhase(share=share)
        ),
    )
    trainer = Trainer(config, tmp_path, progress=False)
    trainer.train_transformer()
    # The first half reuses the 4 pool batches; the second draws one fresh batch per step.
    assert len(drawn) == 4 + steps * share
    assert set(drawn[4:]) == {LOW_BUCKETS[0], HIGH_BUCKETS[0]}


@pytest.mark.parametrize(("dropout", "expect_empty"), [(0.0, False), (1.0, True)])
def test_caption_dropout_trains_on_the_empty_caption(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dropout: float, expect_empty: bool
) -> None:
    """With caption dropout the transformer sees the empty caption (true CFG's negative), and
    the exported card asks the engine for true CFG at the config's scale."""
    from dataclasses import replace

    tiny = get_config("tiny")
    config = replace(tiny, transformer=replace(tiny.transformer, caption_dropout=dropout))
    trainer = Trainer(config, tmp_path, progress=False)
    seen: list[str] = []
    real_encode = trainer.encode_captions

    def recording_encode(captions: list[str]):  # type: ignore[no-untyped-def]
        seen.extend(captions)
        return real_encode(captions)

    monkeypatch.setattr(trainer, "encode_captions", recording_encode)
    trainer.train_transformer()
    assert len(seen) == tiny.transformer.steps * tiny.transformer.batch_size
    assert all(caption == "" for caption in seen) == expect_empty
    assert any(caption == "" for caption in seen) == expect_empty
    card = json.loads((trainer.export() / "builtin.json").read_text())
    assert card.get("true_cfg_scale") == (tiny.transformer.true_cfg_scale if dropout else None)
    assert "refine_sigma" not in card  # the tiny config leaves each preset's own


def test_the_cpu_config_writes_its_refine_sigma_to_the_card(tmp_path: Path) -> None:
    from dataclasses import replace

    from mrflow_daemon.builtin import model_card, refine_sigma

    tiny = get_config("tiny")
    sigma = get_config("cpu").transformer.refine_sigma
    assert sigma is not None and 0.12 < sigma <= 1  # measured higher than the paper's
    config = replace(tiny, transformer=replace(tiny.transformer, refine_sigma=sigma))
    trainer = Trainer(config, tmp_path, progress=False)
    trainer.train_transformer()
    assert refine_sigma(model_card(trainer.export())) == sigma


def test_pick_size_draws_every_bucket_unless_square_only() -> None:
    import random

    from mrflow_daemon.builtin.config import HIGH_BUCKETS, LOW_BUCKETS
    from mrflow_daemon.builtin.data import pick_size

    rng = random.Random(0)
    assert {pick_size(rng, 0.5) for _ in range(400)} == set(LOW_BUCKETS + HIGH_BUCKETS)
    squares = {pick_size(rng, 0.5, square_only=True) for _ in range(400)}
    assert squares == {LOW_BUCKETS[0], HIGH_BUCKETS[0]}


def test_shape_tokens_mark_the_tokens_a_shape_covers() -> None:
    """The loss weight map: a shape at the top marks top-row tokens, never the bottom half."""
    import random

    from mrflow_daemon.builtin.data import Batch, shape_tokens
    from mrflow_daemon.builtin.world import parse_caption, render_batch, sample_placements

    scene = parse_caption("a red circle at the top, grey background")
    placements = [sample_placements(scene, random.Random(0))]
    batch = Batch(render_batch([scene], placements, 128, 128), [scene.caption()], [scene])
    exact = shape_tokens(batch, dilate=0).view(8, 8)  # 128 px: 8 x 8 tokens of 16 px
    assert exact[:3, 2:6].sum() >= 2 and exact[4:].sum() == 0 and exact[:, :2].sum() == 0
    grown = shape_tokens(batch).view(8, 8)
    assert grown.sum() > exact.sum() and bool((grown >= exact).all())


def test_caption_sensitivity_is_zero_for_a_model_deaf_to_its_caption() -> None:
    from mrflow_daemon.builtin.sensitivity import caption_sensitivity

    torch.manual_seed(0)
    pipe = make_pipeline(get_config("tiny"))
    heard = caption_sensitivity(pipe)
    assert all(v["model"] > 1e-3 and v["ideal"] > 0.05 for v in heard.values()), heard
    with torch.no_grad():  # cut both text paths: the T5 sequence and the pooled CLIP vector
        for layer in (
            pipe.transformer.context_embedder,
            pipe.transformer.time_text_embed.text_embedder,
        ):
            for param in layer.parameters():
                param.zero_()
    deaf = caption_sensitivity(pipe)
    assert all(v["model"] < 1e-6 for v in deaf.values()), deaf
    assert deaf["position"]["ideal"] == heard["position"]["ideal"]


def _train_command_args(*argv: str):  # type: ignore[no-untyped-def]
    import argparse

    from mrflow_daemon.commands import train_builtin

    parser = argparse.ArgumentParser()
    train_builtin.add_arguments(parser)
    return train_builtin, parser.parse_args(list(argv))


@pytest.mark.parametrize("value", ["-0.1", "1", "1.5"])
def test_train_command_rejects_a_caption_dropout_outside_0_to_1(value: str) -> None:
    command, args = _train_command_args("--config", "tiny", "--caption-dropout", value)
    with pytest.raises(SystemExit, match=r"--caption-dropout must be at least 0 and below 1"):
        command.run(args)


def test_train_command_passes_caption_dropout_to_the_recipe(tmp_path: Path) -> None:
    command, args = _train_command_args(
        "--config", "tiny", "--caption-dropout", "0.25", "--out", str(tmp_path),
        "--quick-check", "0", "--no-progress",
    )  # fmt: skip
    assert command.run(args) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["config"]["transformer"]["caption_dropout"] == 0.25


@pytest.mark.parametrize("value", ["-0.5", "10.5"])
def test_train_command_rejects_a_kind_loss_outside_0_to_10(value: str) -> None:
    command, args = _train_command_args("--config", "tiny", "--kind-loss", value)
    with pytest.raises(SystemExit, match=r"--kind-loss must be between 0 and 10"):
        command.run(args)


def test_kind_labels_mark_the_tokens_each_shape_covers_with_its_kind() -> None:
    from mrflow_daemon.builtin.data import Batch, kind_labels
    from mrflow_daemon.builtin.world import (
        KINDS,
        Placement,
        make_scene,
        parse_caption,
        render_batch,
    )

    scene = parse_caption(
        "a red circle on the left and a blue triangle at the top, grey background"
    )
    scene = make_scene(scene.shapes, scene.background)
    places = (Placement(0.2, 0.5, 0.2), Placement(0.5, 0.2, 0.2))
    images = render_batch([scene], [places], 256, 256)
    grid = kind_labels(Batch(images, [scene.caption()], [scene], [places])).view(16, 16)
    # The share of each 16 px token the shapes cover, from the rendered picture.
    drawn = ((images[0] - 128 / 255).abs().amax(dim=0) > 0.1).float()
    coverage = torch.nn.functional.avg_pool2d(drawn[None, None], 16)[0, 0]
    assert bool((grid[coverage >= 0.1] > 0).all())  # every token a shape covers a tenth of
    assert bool((grid[coverage == 0] == 0).all())  # no token it misses
    # The triangle's apex (row 1, a quarter covered) is a triangle token; a box of the
    # shape's extent around its centroid would have missed it.
    assert grid[1, 7] == grid[1, 8] == 1 + KINDS.index("triangle")
    assert grid[7, 2] == 1 + KINDS.index("circle")
    with pytest.raises(ValueError, match="placements"):
        kind_labels(Batch(images, [scene.caption()], [scene]))


def test_kind_labels_of_a_mixed_batch_are_each_pictures_own() -> None:
    """One- and two-shape scenes batched together (padded slots) label as each does alone."""
    import random

    from mrflow_daemon.builtin.data import Batch, kind_labels
    from mrflow_daemon.builtin.world import (
        KINDS,
        render_batch,
        sample_placements,
        sample_train_scene,
    )

    rng = random.Random(5)
    scenes = [sample_train_scene(rng) for _ in range(12)]
    assert {len(scene.shapes) for scene in scenes} == {1, 2}
    places = [sample_placements(scene, rng) for scene in scenes]
    images = render_batch(scenes, places, 160, 96)
    batched = kind_labels(Batch(images, [s.caption() for s in scenes], scenes, places))
    for index, (scene, place) in enumerate(zip(scenes, places, strict=True)):
        alone = kind_labels(Batch(images[index : index + 1], [scene.caption()], [scene], [place]))
        assert torch.equal(batched[index], alone[0])
        assert int(batched[index].count_nonzero()) > 0
        assert set(batched[index].unique().tolist()) <= {
            0,
            *(1 + KINDS.index(s.kind) for s in scene.shapes),
        }


def test_kind_loss_trains_a_head_that_steers_the_transformer(tmp_path: Path) -> None:
    """With the kind loss the transformer trains differently (the head's gradient reaches it),
    the head is checkpointed for --resume, and its hook is gone after training."""
    from dataclasses import replace

    tiny = get_config("tiny")
    with_kind = replace(tiny, transformer=replace(tiny.transformer, kind_loss_weight=1.0))
    weights = {}
    for name, config in (("plain", tiny), ("kind", with_kind)):
        trainer = Trainer(config, tmp_path / name, progress=False)
        trainer.train_transformer()
        weights[name] = next(iter(trainer.pipe.transformer.parameters())).detach().clone()
        blocks = trainer.pipe.transformer.single_transformer_blocks
        assert all(not block._forward_hooks for block in blocks)
        payload = torch.load(tmp_path / name / "checkpoints" / "transformer.pt", weights_only=False)
        assert ("kind_head" in payload) == (name == "kind")
        metrics = trainer.states["transformer"].metrics
        assert ("kind_head_shape_token_accuracy" in metrics) == (name == "kind")
    assert not torch.equal(weights["plain"], weights["kind"])


def test_a_run_stopped_while_measuring_the_vae_latents_measures_them_when_resumed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    measured = Trainer._latent_stats

    def killed(self: Trainer) -> dict[str, float]:
        raise KeyboardInterrupt  # the session ends right after the VAE's last step

    monkeypatch.setattr(Trainer, "_latent_stats", killed)
    with pytest.raises(KeyboardInterrupt):
        Trainer(get_config("tiny"), tmp_path, progress=False).train_vae()
    monkeypatch.setattr(Trainer, "_latent_stats", measured)
    resumed = Trainer(get_config("tiny"), tmp_path, progress=False, resume=True)
    resumed.train_vae()
    stats = torch.load(tmp_path / "checkpoints" / "vae.pt", weights_only=False)["latent_stats"]
    assert stats["scaling_factor"] != 1.0 and stats["shift_factor"] != 0.0  # measured, not defaults
    assert resumed.pipe.vae.config.scaling_factor == stats["scaling_factor"]
