"""``edgediff export``: a model to ONNX with its preconditioning folded in."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("export")
@click.argument("source")
@click.option("-o", "--out", required=True, type=click.Path(),
              help="The .onnx file to write; with --decoder, the bundle folder.")
@click.option("--force", is_flag=True, help="Overwrite OUT if it exists.")
@click.option("--opset", type=click.IntRange(17, 23), default=17, show_default=True)
@click.option("--no-validate", is_flag=True, help="Skip the ONNX Runtime vs torch check.")
@click.option("--fp16", is_flag=True,
              help="Run the network in float16; preconditioning, σ → t, the noise embedding "
                   "and attention softmax stay float32. Validated with looser tolerances and "
                   "end to end against the float32 model.")
@click.option("--atol", type=click.FloatRange(min=0), default=None,
              help="Validation: absolute tolerance per element [default: 1e-4; 1e-2 with "
                   "--fp16].")
@click.option("--rtol", type=click.FloatRange(min=0), default=None,
              help="Validation: relative tolerance per element [default: 1e-4; 1e-2 with "
                   "--fp16].")
@click.option("--guidance", is_flag=True,
              help="Class-conditional models: a graph that takes a guidance scale per sample "
                   "and doubles the batch inside (conditional and null-label halves), so "
                   "classifier-free guidance is one launch per step.")
@click.option("--null-label", type=click.IntRange(0), default=None, metavar="ID",
              help="Class-conditional models: the class id trained as 'no label' "
                   "[default: the checkpoint's; diffusers folders: the last class embedding].")
@click.option("--int8", is_flag=True,
              help="Write a QDQ graph: Conv/Gemm/MatMul with per-channel int8 weights and "
                   "8-bit activations, calibrated on the model's own sampling trajectories; "
                   "preconditioning and the noise embedding stay float32. Refused if it "
                   "strays past --int8-tolerance from the float32 graph.")
@click.option("--calibration", type=click.IntRange(1), default=64, show_default=True,
              metavar="N", help="--int8: samples of the default solver to calibrate on.")
@click.option("--calibration-method", default="trajectory", show_default=True,
              type=click.Choice(["trajectory", "noise", "single_sigma"]),
              help="--int8: every call of the default solver (trajectory), pure noise at "
                   "random σ, or the trajectories at the one σ nearest σ_data (the last two "
                   "for comparison).")
@click.option("--int8-target", type=click.Choice(["onnxruntime", "tensorrt"]),
              default="onnxruntime", show_default=True,
              help="--int8: uint8 activations for ONNX Runtime's fastest CPU kernels, or "
                   "symmetric int8 ones (zero point 0), which TensorRT requires.")
@click.option("--int8-tolerance", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="X", help="--int8: largest RMS of int8 − float32 at any σ and end to "
                                "end, in units of the data's half range [default: 0.1].")
@click.option("--allow-pickle", is_flag=True,
              help="Read a .pt/.pkl checkpoint with torch.load(weights_only=True). Pickles can "
                   "run code: use only for files you trust.")
@click.option("--decoder", "decoder_folder", default=None, metavar="VAE_FOLDER",
              type=click.Path(exists=True, file_okay=False),
              help="Latent models: also export this local diffusers VAE folder's decoder "
                   "(AutoencoderKL or AutoencoderTiny, or a pipeline folder with vae/), and "
                   "write -o as a bundle folder (denoiser.onnx, decoder.onnx, bundle.json) "
                   "whose samples are images. The latent map comes from the model's "
                   "edgediff.latent (EDM2 snapshots), else the VAE config's scaling_factor.")
@click.option("--decoder-precision", type=click.Choice(["fp32", "fp16", "int8"]),
              default="fp32", show_default=True,
              help="--decoder: the decoder graph's precision, apart from the denoiser's. fp16 "
                   "keeps the latent map and the graph's input/output float32; int8 is "
                   "calibrated on latents the just-exported denoiser samples.")
@click.option("--decoder-calibration", type=click.IntRange(1), default=4, show_default=True,
              metavar="N", help="--decoder-precision int8: denoiser samples (default solver) "
                                "whose latents calibrate the decoder.")
def command(source, out, force, opset, no_validate, fp16, atol, rtol, guidance, null_label,
            int8, calibration, calibration_method, int8_target, int8_tolerance, allow_pickle,
            decoder_folder, decoder_precision, decoder_calibration):
    """Export SOURCE to ONNX as one function D(x, sigma) -> denoised, with metadata.

    SOURCE is a checkpoint (NAME.safetensors with NAME.json beside it), a local
    diffusers folder (UNet2DModel, UNet2DConditionModel, DiTTransformer2DModel), an
    NVlabs EDM/EDM2 network snapshot, 'bundled' (the shipped digits model),
    'bundled-cond' (the shipped class-conditional digits model), 'mixture2d' (the
    exact 2-D Gaussian-mixture denoiser), 'mixture2d-cond' (the same, its classes
    being its components) or 'mixture2d-flow' (its exact velocity, as a
    rectified-flow model). A class-conditional model's graph also takes
    class_labels. The export is checked, validated against torch with ONNX
    Runtime, and only then written.

    \b
    Examples:
      edgediff export bundled -o digits.onnx
      edgediff export my-model.safetensors -o my-model.onnx --force
      edgediff export bundled -o digits-fp16.onnx --fp16
      edgediff export bundled -o digits-int8.onnx --int8 --calibration 64
      edgediff export bundled -o digits-trt8.onnx --int8 --int8-target tensorrt
      edgediff export mixture2d-cond -o mix-cfg.onnx --guidance
      edgediff export network-snapshot.pkl --decoder sd-vae-ft-mse/ -o bundle/
      edgediff export network-snapshot.pkl --decoder taesd/ --decoder-precision int8 -o b/

    With --decoder, SOURCE must sample latents [C, h, w]; the decoder is exported
    at that latent size (h and w stay dynamic, for tiled decoding), validated
    against torch's vae.decode, and both graphs land together or not at all.
    """
    from edgediff.export.int8 import Int8Options
    from edgediff.export.onnx import ExportOptions, export_source

    quantized = Int8Options(calibration=calibration, method=calibration_method,
                            tolerance=int8_tolerance, target=int8_target) if int8 else None
    options = ExportOptions(opset=opset, force=force, validate=not no_validate, atol=atol,
                            rtol=rtol, fp16=fp16, guidance=guidance, int8=quantized)
    if decoder_folder is not None:
        return _export_bundle(source, decoder_folder, out, options, allow_pickle, null_label,
                              decoder_precision, decoder_calibration)
    if Path(out).is_dir():
        raise click.BadParameter(f"{out} is a folder; -o names the .onnx file to write "
                                 f"(a folder only with --decoder)", param_hint="-o")
    model, result = export_source(source, out, options, allow_pickle=allow_pickle,
                                  null_label=null_label)
    if result is not None:
        click.echo(result if int8 else f"ONNX Runtime vs torch {result}")
    size = Path(out).stat().st_size
    click.echo(f"wrote {out} ({size / 2**20:.2f} MiB, {model.config['parameterization']['name']},"
               f" sample shape {tuple(model.config['sample_shape'])})")


def _export_bundle(source, decoder_folder, out, options, allow_pickle, null_label, precision,
                   calibration):
    from edgediff.export.with_decoder import DecoderOptions, export_bundle

    made = export_bundle(source, decoder_folder, out, options,
                         DecoderOptions(precision, calibration), allow_pickle=allow_pickle,
                         null_label=null_label, progress=lambda line: click.echo(line, err=True))
    if made.validation is not None:
        click.echo(f"denoiser: ONNX Runtime vs torch {made.validation}")
    d, b = made.decoder, made.bundle
    size = sum(b.path(s).stat().st_size for s in ("denoiser", "decoder"))
    click.echo(f"wrote {out}/ ({size / 2**20:.2f} MiB): denoiser.onnx samples latents "
               f"{tuple(made.model.config['sample_shape'])}, decoder.onnx ({d.kind}, "
               f"{d.precision}) makes images {d.image_shape}")
