#!/usr/bin/env python3
"""PyTorch reference for neural-style: the same VGG, losses and L-BFGS, so that the Rust
engine can be checked against it.

  fixtures OUTDIR   tiny generated VGG19 weights, inputs and the losses/gradients PyTorch
                    computes for them (the parity tests in crates/neural-style/tests/ read these)
  run ...           a full style-transfer run with PyTorch's LBFGS, printing the final losses
  bench ...         seconds per forward+backward step and peak memory, random VGG weights

Needs torch, numpy, safetensors and pillow (`pip install torch numpy safetensors pillow`).
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from safetensors import safe_open

BLOCKS = {"vgg16": [2, 2, 3, 3, 3], "vgg19": [2, 2, 4, 4, 4]}
WIDTHS = [64, 128, 256, 512, 512]
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def layer_names(arch):
    """torchvision `features` order: conv, relu per conv, pool per block."""
    names = []
    for b, n in enumerate(BLOCKS[arch], start=1):
        for i in range(1, n + 1):
            names += [f"conv{b}_{i}", f"relu{b}_{i}"]
        names.append(f"pool{b}")
    return names


class Vgg:
    def __init__(self, arch, params, pooling="max", padding="zero"):
        self.arch, self.params, self.pooling, self.padding = arch, params, pooling, padding
        self.names = layer_names(arch)

    def features(self, x, wanted):
        deepest = max(self.names.index(w) for w in wanted)
        out = {}
        for i, name in enumerate(self.names[: deepest + 1]):
            if name.startswith("conv"):
                w, b = self.params[name]
                if self.padding == "zero":
                    x = F.conv2d(x, w, b, padding=1)
                else:
                    mode = {"reflect": "reflect", "replicate": "replicate"}[self.padding]
                    if min(x.shape[2], x.shape[3]) < 2:
                        mode = "replicate"  # reflection needs 2 pixels; same fallback as vgg.rs
                    x = F.conv2d(F.pad(x, (1, 1, 1, 1), mode=mode), w, b)
            elif name.startswith("relu"):
                x = F.relu(x)
            else:
                x = F.max_pool2d(x, 2) if self.pooling == "max" else F.avg_pool2d(x, 2)
            if name in wanted:
                out[name] = x
        return [out[w] for w in wanted]


def load_params(path, arch):
    tensors = load_file(path)
    params = {}
    for i, name in enumerate(layer_names(arch)):
        if name.startswith("conv") and f"features.{i}.weight" in tensors:
            params[name] = (tensors[f"features.{i}.weight"].float(), tensors[f"features.{i}.bias"].float())
    with safe_open(path, "pt") as f:
        meta = f.metadata() or {}
    return params, meta


def gram(f, form):
    _, c, h, w = f.shape
    f = f.reshape(c, h * w)
    g = f @ f.t()
    return g if form == "paper" else g / (c * h * w)


def w2_target(f):
    """Mean, covariance, its square root and energy (tr E[ff^T]) of features, in float64."""
    c = f.shape[1]
    f = f.reshape(c, -1).double()
    mu = f.mean(1, keepdim=True)
    second = f @ f.t() / f.shape[1]
    cov = second - mu @ mu.t()
    evals, evecs = torch.linalg.eigh(cov)
    sqrt_cov = evecs @ torch.diag(evals.clamp(min=0).sqrt()) @ evecs.t()
    return mu, cov, sqrt_cov, second.trace()


def w2_term(f, target):
    """W2^2 between the Gaussians of f's features and the target's (crates/neural-style/src/w2.rs)."""
    mu_s, cov_s, sqrt_s, _ = target
    c = f.shape[1]
    f = f.reshape(c, -1).double()
    mu = f.mean(1, keepdim=True)
    cen = f - mu
    cov = cen @ cen.t() / f.shape[1]
    m = sqrt_s @ cov @ sqrt_s
    root = torch.linalg.eigvalsh((m + m.t()) / 2).clamp(min=0).sqrt().sum()
    return ((mu - mu_s) ** 2).sum() + cov.trace() + cov_s.trace() - 2 * root


def losses(net, x, content_targets, style_targets, cfg):
    """Weighted content, style and TV terms, as in crates/neural-style/src/loss.rs."""
    layers = list(dict.fromkeys(cfg["content_layers"] + cfg["style_layers"]))
    feats = dict(zip(layers, net.features(x, layers)))
    form = cfg["loss_form"]
    # "normalized": each mean-form term over its target's energy, TV as a mean pixel step.
    norm = (lambda t: 1.0 / (t**2).mean().item()) if form == "normalized" else (lambda t: 1.0)
    content = sum(
        ((feats[l] - t) ** 2).mean() * norm(t) if form != "paper" else 0.5 * ((feats[l] - t) ** 2).sum()
        for l, t in zip(cfg["content_layers"], content_targets)
    )
    style = 0.0
    for l, a, w in zip(cfg["style_layers"], style_targets, cfg["style_layer_weights"]):
        f = feats[l]
        _, c, h, wd = f.shape
        if cfg.get("style_loss") == "w2":
            scale = {"normalized": 1.0 / a[3].item(), "mean": 1.0 / c}.get(form, 1.0)
            style = style + w * scale * w2_term(f, a).float()
            continue
        d = (gram(f, form) - a) ** 2
        style = style + w * (d.mean() * norm(a) if form != "paper" else d.sum() / (4.0 * c * c * (h * wd) ** 2))
    tv = (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().sum() + (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().sum()
    if form == "normalized":
        tv = tv / (x.shape[1] * x.shape[2] * x.shape[3] * cfg.get("pixel_scale", 1.0))
    c_term = cfg["content_weight"] * content
    s_term = cfg["style_weight"] * style
    t_term = cfg["tv_weight"] * tv
    return c_term + s_term + t_term, c_term, s_term, t_term


def targets(net, content, style, cfg):
    with torch.no_grad():
        ct = net.features(content, cfg["content_layers"]) if cfg["content_layers"] else []
        stat = w2_target if cfg.get("style_loss") == "w2" else (lambda f: gram(f, cfg["loss_form"]))
        st = [stat(f) for f in net.features(style, cfg["style_layers"])] if cfg["style_layers"] else []
    return ct, st


def random_params(arch, divisor, gen):
    params, cin = {}, 3
    for name in layer_names(arch):
        if not name.startswith("conv"):
            continue
        b = int(name[4])
        cout = max(1, WIDTHS[b - 1] // divisor)
        std = (2.0 / (9 * cin)) ** 0.5
        params[name] = (torch.randn(cout, cin, 3, 3, generator=gen) * std, torch.randn(cout, generator=gen) * 0.1)
        cin = cout
    return params


def cmd_fixtures(args):
    """Tiny VGG19 (widths / 16), 40x48 content, 36x44 style, and a perturbed image x."""
    os.makedirs(args.outdir, exist_ok=True)
    gen = torch.Generator().manual_seed(20261127)
    params = random_params("vgg19", 16, gen)
    names = layer_names("vgg19")
    weights = {}
    for name, (w, b) in params.items():
        i = names.index(name)
        weights[f"features.{i}.weight"] = w.contiguous()
        weights[f"features.{i}.bias"] = b.contiguous()
    save_file(weights, os.path.join(args.outdir, "tiny_vgg19.safetensors"), metadata={"input": "torch-rgb-01", "arch": "vgg19"})
    # The same network cut after conv3_1 (features.0/2/5/7/10), like the shared normalised
    # VGG19 that stops there.
    cut = {k: v for k, v in weights.items() if int(k.split(".")[1]) <= 10}
    save_file(cut, os.path.join(args.outdir, "tiny_vgg19_to_conv3_1.safetensors"), metadata={"input": "torch-rgb-01", "arch": "vgg19"})
    # The same weights as a PyTorch zip checkpoint, with a classifier as torchvision's files
    # have (it must be ignored).
    state = dict(weights)
    state["classifier.0.weight"] = torch.randn(4, 8, generator=gen)
    state["classifier.0.bias"] = torch.randn(4, generator=gen)
    torch.save(state, os.path.join(args.outdir, "tiny_vgg19.pth"))
    content = torch.randn(1, 3, 40, 48, generator=gen)
    style = torch.randn(1, 3, 36, 44, generator=gen)
    x0 = content + 0.5 * torch.randn(1, 3, 40, 48, generator=gen)
    tensors = {"content": content.contiguous(), "style": style.contiguous(), "x": x0.contiguous()}
    cases = []
    base = dict(
        content_layers=["relu4_2"],
        style_layers=["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"],
        content_weight=5.0, style_weight=1e3, tv_weight=1e-5,
    )
    variants = [
        dict(name="mean_max_zero", loss_form="mean", pooling="max", padding="zero"),
        dict(name="mean_avg_zero", loss_form="mean", pooling="avg", padding="zero"),
        dict(name="paper_max_zero", loss_form="paper", pooling="max", padding="zero", content_weight=1.0, style_weight=1e3, tv_weight=0.0),
        dict(name="mean_max_reflect", loss_form="mean", pooling="max", padding="reflect"),
        dict(name="normalized_max_reflect", loss_form="normalized", pooling="max", padding="reflect",
             content_weight=1.0, style_weight=10.0, tv_weight=0.5),
        dict(name="mean_avg_replicate_layers", loss_form="mean", pooling="avg", padding="replicate",
             content_layers=["conv3_2", "relu2_2"], style_layers=["relu1_2", "pool2", "relu3_4", "conv5_1"],
             style_layer_weights=[0.5, 1.0, 2.0, 0.25]),
        # W2 on layers with more positions than channels (a rank-deficient covariance has
        # no finite square-root derivative, and the two sides floor it differently).
        dict(name="w2_normalized_max_reflect", loss_form="normalized", pooling="max", padding="reflect",
             style_loss="w2", style_layers=["relu1_1", "relu2_1", "relu3_1"],
             content_weight=1.0, style_weight=10.0, tv_weight=0.0),
        dict(name="w2_mean_avg_zero", loss_form="mean", pooling="avg", padding="zero",
             style_loss="w2", style_layers=["relu1_1", "relu2_1", "relu3_1"], tv_weight=0.0),
    ]
    for v in variants:
        cfg = dict(base)
        cfg.update(v)
        if "style_layer_weights" not in cfg:
            n = len(cfg["style_layers"])
            cfg["style_layer_weights"] = [1.0] * n if cfg["loss_form"] == "mean" else [1.0 / n] * n  # paper, normalized: 1/L
        net = Vgg("vgg19", params, cfg["pooling"], cfg["padding"])
        ct, st = targets(net, content, style, cfg)
        x = x0.clone().requires_grad_(True)
        total, c, s, t = losses(net, x, ct, st, cfg)
        total.backward()
        tensors[f"grad.{cfg['name']}"] = x.grad.contiguous()
        cfg.update(total=total.item(), content=c.item(), style=s.item(), tv=t.item())
        cases.append(cfg)
        print(f"{cfg['name']}: total {cfg['total']:.6e} content {cfg['content']:.6e} style {cfg['style']:.6e} tv {cfg['tv']:.6e}")
    save_file(tensors, os.path.join(args.outdir, "parity_tensors.safetensors"))
    with open(os.path.join(args.outdir, "parity_cases.json"), "w") as f:
        json.dump({"generated_by": "tools/torch_reference.py fixtures", "torch": torch.__version__, "cases": cases}, f, indent=1)


def load_image(path):
    from PIL import Image

    img = Image.open(path).convert("RGB")
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1).unsqueeze(0).contiguous()


def to_network(rgb, convention, mean_bgr):
    if convention == "caffe-bgr-255":
        return rgb.flip(1) * 255.0 - torch.tensor(mean_bgr).view(1, 3, 1, 1)
    return (rgb - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def from_network(x, convention, mean_bgr):
    if convention == "caffe-bgr-255":
        return ((x + torch.tensor(mean_bgr).view(1, 3, 1, 1)) / 255.0).flip(1)
    return x * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)


def cmd_run(args):
    """A whole run on images already at the working size (no resampling on either side)."""
    torch.set_num_threads(args.threads or torch.get_num_threads())
    params, meta = load_params(args.weights, args.arch)
    convention = meta.get("input", "torch-rgb-01")
    mean_bgr = [float(v) for v in meta.get("mean_bgr", "103.939,116.779,123.68").split(",")]
    cfg = dict(
        content_layers=args.content_layers.split(","), style_layers=args.style_layers.split(","),
        content_weight=args.content_weight, style_weight=args.style_weight, tv_weight=args.tv_weight,
        loss_form="mean",
    )
    cfg["style_layer_weights"] = [1.0] * len(cfg["style_layers"])
    net = Vgg(args.arch, params, args.pooling, "zero")
    content = to_network(load_image(args.content), convention, mean_bgr).contiguous()
    style = to_network(load_image(args.style), convention, mean_bgr).contiguous()
    ct, st = targets(net, content, style, cfg)
    img = content.clone().contiguous().requires_grad_(True)
    # Tolerances 0, as optim.rs's Lbfgs::new (neural-style-pt disables them too).
    opt = torch.optim.LBFGS([img], max_iter=args.iterations, max_eval=args.iterations, history_size=args.lbfgs_history,
                            tolerance_grad=0.0, tolerance_change=0.0,
                            line_search_fn="strong_wolfe" if args.line_search else None)
    log = []

    def closure():
        opt.zero_grad()
        total, c, s, t = losses(net, img, ct, st, cfg)
        total.backward()
        log.append((total.item(), c.item(), s.item(), t.item()))
        return total

    start = time.time()
    opt.step(closure)
    secs = time.time() - start
    total, c, s, t = log[-1]
    print(json.dumps({"engine": "pytorch", "evaluations": len(log), "total": total, "content": c, "style": s, "tv": t,
                      "best": min(l[0] for l in log), "seconds": secs}))
    if args.out:
        from PIL import Image

        out = from_network(img.detach(), convention, mean_bgr).clamp(0, 1)[0].permute(1, 2, 0).numpy()
        Image.fromarray((out * 255.0).round().astype(np.uint8)).save(args.out)


def cmd_resize(args):
    """Resize an image so its longest side is SIZE (Lanczos), saved as PNG."""
    from PIL import Image

    img = Image.open(args.src).convert("RGB")
    w, h = img.size
    if w >= h:
        size = (args.size, max(1, round(h * args.size / w)))
    else:
        size = (max(1, round(w * args.size / h)), args.size)
    img.resize(size, Image.LANCZOS).save(args.dst)


def cmd_bench(args):
    """Same measure as `neural-style bench`: content relu4_2 + style relu1_1..relu5_1, random VGG."""
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    params = random_params(args.arch, 1, gen)
    params = {k: (w.to(dev).requires_grad_(False), b.to(dev).requires_grad_(False)) for k, (w, b) in params.items()}
    net = Vgg(args.arch, params)
    n = args.size
    cfg = dict(content_layers=["relu4_2"], style_layers=["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"],
               content_weight=1.0, style_weight=1e3, tv_weight=0.0, loss_form="mean", style_layer_weights=[1.0] * 5)
    content = torch.rand(1, 3, n, n, generator=gen).to(dev)
    style = torch.rand(1, 3, n, n, generator=gen).to(dev)
    ct, st = targets(net, content, style, cfg)
    x = (content + 0.01).requires_grad_(True)

    def step():
        x.grad = None
        total = losses(net, x, ct, st, cfg)[0]
        total.backward()
        _ = x.grad.sum().item()  # waits for the device
        return total.item()

    step()
    times = []
    for _ in range(args.steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    times.sort()
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    out = {"engine": "pytorch", "arch": args.arch, "size": n, "steps": len(times), "median_s": times[len(times) // 2],
           "min_s": times[0], "max_s": times[-1], "peak_rss_mib": rss, "threads": torch.get_num_threads(), "device": args.device}
    if dev.type == "cuda":
        out["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(out))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fixtures")
    f.add_argument("outdir")
    r = sub.add_parser("run")
    r.add_argument("--content", required=True)
    r.add_argument("--style", required=True)
    r.add_argument("--weights", required=True)
    r.add_argument("--arch", default="vgg19")
    r.add_argument("--iterations", type=int, default=150)
    r.add_argument("--lbfgs-history", type=int, default=100)
    r.add_argument("--line-search", action="store_true")
    r.add_argument("--content-layers", default="relu4_2")
    r.add_argument("--style-layers", default="relu1_1,relu2_1,relu3_1,relu4_1,relu5_1")
    r.add_argument("--content-weight", type=float, default=5.0)
    r.add_argument("--style-weight", type=float, default=100.0)
    r.add_argument("--tv-weight", type=float, default=1e-3)
    r.add_argument("--pooling", default="max")
    r.add_argument("--threads", type=int, default=0)
    r.add_argument("--out")
    z = sub.add_parser("resize")
    z.add_argument("src")
    z.add_argument("dst")
    z.add_argument("size", type=int)
    b = sub.add_parser("bench")
    b.add_argument("--size", type=int, default=256)
    b.add_argument("--steps", type=int, default=5)
    b.add_argument("--arch", default="vgg19")
    b.add_argument("--threads", type=int, default=0)
    b.add_argument("--device", default="cpu", help="cpu or cuda")
    args = p.parse_args()
    {"fixtures": cmd_fixtures, "run": cmd_run, "bench": cmd_bench, "resize": cmd_resize}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
