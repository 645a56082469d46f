"""PyTorch side of `hepar bench --compare pytorch`: the same networks (written from
../shared/design/cotnext-unet.md and seed-unets.md, with the same state_dict names), the same
workloads and losses, timed one run at a time on request so the two engines alternate.

Protocol (`serve`): one request per line on stdin, a workload name or an op case
`op FAMILY D0,D1,... forward|forward+backward` (src/cli/op_cases.rs names the families and
shapes); the first request of a workload or case builds it and runs it once untimed (the
warm-up), then every request answers one JSON line {"workload": NAME, "seconds": S,
"peak_rss_bytes": B} on stdout, B being the process's peak resident set since the workload was
built (one workload is kept at a time). `check FIXTURE...` scores the networks against the
shared golden fixtures, so the comparison is known to time the same functions.
"""

import argparse
import gc
import json
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv(dims, cin, cout, k, groups=1, bias=False, **kw):
    cls = nn.Conv3d if dims == 3 else nn.Conv2d
    kw.setdefault("padding", k // 2)
    return cls(cin, cout, k, groups=groups, bias=bias, **kw)


def batchnorm(dims, c):
    return nn.BatchNorm3d(c) if dims == 3 else nn.BatchNorm2d(c)


# --- The CoTNeXt U-Net -------------------------------------------------------------------------


class CoT(nn.Module):
    def __init__(self, dims, c, k=3):
        super().__init__()
        self.k = k
        self.key_embed = nn.Sequential(conv(dims, c, c, 3, groups=4), batchnorm(dims, c), nn.SiLU())
        self.value_embed = nn.Sequential(conv(dims, c, c, 1), batchnorm(dims, c))
        mid = 2 * c // 4
        self.attention_embed = nn.Sequential(
            conv(dims, 2 * c, mid, 1), batchnorm(dims, mid), nn.SiLU(),
            conv(dims, mid, k * k * c, 1, bias=True))

    def forward(self, x):
        k1 = self.key_embed(x)
        v = self.value_embed(x)
        a = self.attention_embed(torch.cat([k1, x], 1))
        n, c = x.shape[:2]
        a = a.reshape(n, c, self.k * self.k, -1).mean(2)
        w = a.softmax(-1)
        return k1 + (w * v.reshape(n, c, -1)).reshape(x.shape)


def conv_gn(dims, cin, cout, k, groups, norm_groups, act):
    layers = [conv(dims, cin, cout, k, groups=groups), nn.GroupNorm(norm_groups, cout)]
    return nn.Sequential(*layers, nn.SiLU()) if act else nn.Sequential(*layers)


class Block(nn.Module):
    def __init__(self, dims, cin, cout):
        super().__init__()
        m = cout // 2
        self.conv1 = conv_gn(dims, cin, m, 1, 1, 4, True)
        self.conv2 = conv_gn(dims, m, m, 3, 4, 4, True)
        self.conv3 = nn.Sequential(CoT(dims, m), nn.GroupNorm(4, m), nn.SiLU())
        self.conv4 = conv_gn(dims, m, cout, 1, 1, 4, False)
        self.residual = conv_gn(dims, cin, cout, 1, 1, 4, False) if cin != cout else None

    def forward(self, x):
        y = self.conv4(self.conv3(self.conv2(self.conv1(x))))
        return F.silu(y + (self.residual(x) if self.residual is not None else x))


class DoubleConv(nn.Module):
    def __init__(self, dims, cin, n):
        super().__init__()
        self.double_conv = nn.Sequential(
            conv(dims, cin, n, 3), nn.GroupNorm(8, n), nn.SiLU(),
            conv(dims, n, n, 3), nn.GroupNorm(8, n), nn.SiLU())

    def forward(self, x):
        return self.double_conv(x)


class Down(nn.Module):
    def __init__(self, dims, cin, cout):
        super().__init__()
        pool = nn.MaxPool3d(2) if dims == 3 else nn.MaxPool2d(2)
        self.encoder = nn.Sequential(pool, Block(dims, cin, cout))

    def forward(self, x):
        return self.encoder(x)


class Up(nn.Module):
    def __init__(self, dims, cin, cout):
        super().__init__()
        self.mode = "trilinear" if dims == 3 else "bilinear"
        self.conv = Block(dims, cin, cout)

    def forward(self, x, skip):
        x = F.interpolate(x, scale_factor=2, mode=self.mode, align_corners=True)
        pads = []
        for axis in reversed(range(2, x.dim())):
            diff = max(skip.shape[axis] - x.shape[axis], 0)
            pads += [diff // 2, diff - diff // 2]
        if any(pads):
            x = F.pad(x, pads)
        return self.conv(torch.cat([skip, x], 1))


class OutConv(nn.Module):
    def __init__(self, dims, n, classes):
        super().__init__()
        self.conv = conv(dims, n, classes, 1, bias=True)

    def forward(self, x):
        return self.conv(x)


class CotNextUNet(nn.Module):
    def __init__(self, dims, cin, classes, n):
        super().__init__()
        self.conv = DoubleConv(dims, cin, n)
        self.enc1, self.enc2 = Down(dims, n, 2 * n), Down(dims, 2 * n, 4 * n)
        self.enc3, self.enc4 = Down(dims, 4 * n, 8 * n), Down(dims, 8 * n, 8 * n)
        self.dec1, self.dec2 = Up(dims, 16 * n, 4 * n), Up(dims, 8 * n, 2 * n)
        self.dec3, self.dec4 = Up(dims, 4 * n, n), Up(dims, 2 * n, n)
        self.out = OutConv(dims, n, classes)

    def forward(self, x):
        x1 = self.conv(x)
        x2 = self.enc1(x1)
        x3 = self.enc2(x2)
        x4 = self.enc3(x3)
        x5 = self.enc4(x4)
        y = self.dec1(x5, x4)
        y = self.dec2(y, x3)
        y = self.dec3(y, x2)
        return self.out(self.dec4(y, x1))


# --- The other seeds' networks -----------------------------------------------------------------


class ConvBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

    def forward(self, x):
        return self.conv_block(x)


class Encoder(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.encoder = nn.Sequential(nn.MaxPool2d(2), ConvBlock(cin, cout))

    def forward(self, x):
        return self.encoder(x)


class Decoder(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv_trans = nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1)
        self.conv_block = ConvBlock(cin, cout)

    def forward(self, deep, skip):
        return self.conv_block(torch.cat([skip, self.conv_trans(deep)], 1))


class UNet2DClassic(nn.Module):
    def __init__(self, n_channels, n_classes, base=64):
        super().__init__()
        b = base
        self.in_conv = ConvBlock(n_channels, b)
        self.enc_1, self.enc_2 = Encoder(b, 2 * b), Encoder(2 * b, 4 * b)
        self.enc_3, self.enc_4 = Encoder(4 * b, 8 * b), Encoder(8 * b, 16 * b)
        self.dec_1, self.dec_2 = Decoder(16 * b, 8 * b), Decoder(8 * b, 4 * b)
        self.dec_3, self.dec_4 = Decoder(4 * b, 2 * b), Decoder(2 * b, b)
        self.out_conv = nn.Conv2d(b, n_classes, 1)

    def forward(self, x):
        x1 = self.in_conv(x)
        x2 = self.enc_1(x1)
        x3 = self.enc_2(x2)
        x4 = self.enc_3(x3)
        x5 = self.enc_4(x4)
        y = self.dec_1(x5, x4)
        y = self.dec_2(y, x3)
        y = self.dec_3(y, x2)
        return self.out_conv(self.dec_4(y, x1))


def crop_to(skip, u):
    for axis in range(2, skip.dim()):
        c = max(skip.shape[axis] - u.shape[axis], 0)
        skip = skip.narrow(axis, c // 2, skip.shape[axis] - c)
    return skip


class KerasUNet2D(nn.Module):
    def __init__(self, base=32, in_channels=1):
        super().__init__()
        w = [base * k for k in (1, 2, 4, 8, 16, 8, 4, 2, 1)]
        cin = in_channels
        for k in range(5):
            setattr(self, f"conv{k + 1}_1", nn.Conv2d(cin, w[k], 3, padding=1))
            setattr(self, f"conv{k + 1}_2", nn.Conv2d(w[k], w[k], 3, padding=1))
            cin = w[k]
        ups = [w[3], w[2], w[1], w[1]]
        deep = w[4]
        for k in range(4):
            setattr(self, f"up{k + 6}", nn.ConvTranspose2d(deep, ups[k], 2, stride=2))
            out = w[5 + k]
            setattr(self, f"conv{k + 6}_1", nn.Conv2d(ups[k] + w[3 - k], out, 3, padding=1))
            setattr(self, f"conv{k + 6}_2", nn.Conv2d(out, out, 3, padding=1))
            deep = out
        self.conv10 = nn.Conv2d(w[8], 1, 1)

    def block(self, k, x):
        x = F.relu(getattr(self, f"conv{k}_1")(x))
        return F.relu(getattr(self, f"conv{k}_2")(x))

    def forward(self, x):
        skips = [self.block(1, x)]
        for k in range(2, 6):
            skips.append(self.block(k, F.max_pool2d(skips[-1], 2)))
        y = skips.pop()
        for k in range(6, 10):
            u = getattr(self, f"up{k}")(y)
            y = self.block(k, torch.cat([u, crop_to(skips.pop(), u)], 1))
        return self.conv10(y)


class Step(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.step = nn.Sequential(
            nn.Conv3d(cin, cout, 3, padding=1), nn.ReLU(),
            nn.Conv3d(cout, cout, 3, padding=1), nn.ReLU())

    def forward(self, x):
        return self.step(x)


class UNet3D3Class(nn.Module):
    def __init__(self, base=32, in_channels=1, n_classes=3):
        super().__init__()
        b = base
        self.layer1, self.layer2 = Step(in_channels, b), Step(b, 2 * b)
        self.layer3, self.layer4 = Step(2 * b, 4 * b), Step(4 * b, 8 * b)
        self.layer5, self.layer6 = Step(12 * b, 4 * b), Step(6 * b, 2 * b)
        self.layer7 = Step(3 * b, b)
        self.layer8 = nn.Conv3d(b, n_classes, 1)

    def forward(self, x):
        up = lambda t: F.interpolate(t, scale_factor=2, mode="trilinear", align_corners=False)
        x1 = self.layer1(x)
        x2 = self.layer2(F.max_pool3d(x1, 2))
        x3 = self.layer3(F.max_pool3d(x2, 2))
        x4 = self.layer4(F.max_pool3d(x3, 2))
        x5 = self.layer5(torch.cat([up(x4), x3], 1))
        x6 = self.layer6(torch.cat([up(x5), x2], 1))
        x7 = self.layer7(torch.cat([up(x6), x1], 1))
        return self.layer8(x7)


class Dilated(nn.Module):
    def __init__(self, cin, cout, dilations):
        super().__init__()
        self.count = len(dilations)
        for i, d in enumerate(dilations):
            setattr(self, f"conv{i + 1}", nn.Conv3d(cin if i == 0 else cout, cout, 3, padding=d,
                                                    dilation=d, bias=False))
            setattr(self, f"bn{i + 1}", nn.BatchNorm3d(cout))

    def forward(self, x):
        for i in range(1, self.count + 1):
            x = F.relu(getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(x)))
        return x


class DownSample(nn.Module):
    def __init__(self, cin, cout, k, stride, padding):
        super().__init__()
        self.down = nn.Conv3d(cin, cout, k, stride=stride, padding=padding, bias=False)
        self.bn1 = nn.BatchNorm3d(cout)

    def forward(self, x):
        return F.relu(self.bn1(self.down(x)))


class UpSample(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.up = nn.ConvTranspose3d(cin, cout, 2, stride=2)
        self.bn1 = nn.BatchNorm3d(cout)

    def forward(self, x):
        return F.relu(self.bn1(self.up(x)))


class Mapping(nn.Module):
    def __init__(self, cin, cout, scale):
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, 1)
        self.scale = scale

    def forward(self, x):
        y = self.conv(x)
        if self.scale == 1:
            return y
        return F.interpolate(y, scale_factor=self.scale, mode="trilinear", align_corners=True)


class Res3DUNet(nn.Module):
    def __init__(self, n_channel=1, n_output=1, base=16, dropout=0.2):
        super().__init__()
        b, self.p = base, dropout
        self.en1, self.en2 = Dilated(n_channel, b, [1, 1]), Dilated(2 * b, 2 * b, [1, 1, 1])
        self.en3, self.en4 = Dilated(4 * b, 4 * b, [1, 2, 4]), Dilated(8 * b, 8 * b, [3, 4, 5])
        self.de1, self.de2 = Dilated(8 * b, 16 * b, [1, 1, 1]), Dilated(12 * b, 8 * b, [1, 1, 1])
        self.de3, self.de4 = Dilated(6 * b, 4 * b, [1, 1, 1]), Dilated(3 * b, 2 * b, [1, 1])
        self.down1, self.down2 = DownSample(b, 2 * b, 2, 2, 0), DownSample(2 * b, 4 * b, 2, 2, 0)
        self.down3, self.down4 = DownSample(4 * b, 8 * b, 2, 2, 0), DownSample(8 * b, 16 * b, 3, 1, 1)
        self.up2, self.up3, self.up4 = UpSample(16 * b, 8 * b), UpSample(8 * b, 4 * b), UpSample(4 * b, 2 * b)
        self.map1, self.map2 = Mapping(16 * b, n_output, 8), Mapping(8 * b, n_output, 4)
        self.map3, self.map4 = Mapping(4 * b, n_output, 2), Mapping(2 * b, n_output, 1)

    def forward(self, x):
        drop = lambda t: F.dropout(t, self.p, self.training)
        l1 = self.en1(x) + x
        s1 = self.down1(l1)
        l2 = drop(self.en2(s1) + s1)
        s2 = self.down2(l2)
        l3 = drop(self.en3(s2) + s2)
        s3 = self.down3(l3)
        l4 = drop(self.en4(s3) + s3)
        s4 = self.down4(l4)
        out = drop(self.de1(l4) + s4)
        o1 = self.map1(out)
        s6 = self.up2(out)
        out = drop(self.de2(torch.cat([s6, l3], 1)) + s6)
        o2 = self.map2(out)
        s7 = self.up3(out)
        out = drop(self.de3(torch.cat([s7, l2], 1)) + s7)
        o3 = self.map3(out)
        s8 = self.up4(out)
        out = self.de4(torch.cat([s8, l1], 1)) + s8
        return o1, o2, o3, self.map4(out)


# --- Losses ------------------------------------------------------------------------------------


def soft_dice_bce(logits, t):
    p = torch.sigmoid(logits)
    axes = tuple(range(2, logits.dim()))
    dice = ((2 * (p * t).sum(axes) + 1e-5) / (p.sum(axes) + t.sum(axes) + 1e-5)).mean()
    return 0.7 * (1 - dice) + 0.3 * F.binary_cross_entropy_with_logits(logits, t)


def batch_dice(logits, t, smooth=1.0):
    p = torch.sigmoid(logits)
    return (2 * (p * t).sum() + smooth) / (p.sum() + t.sum() + smooth)


def deep_supervision(heads, t):
    single = lambda o: 0.5 * F.binary_cross_entropy_with_logits(o, t) + (1 - batch_dice(o, t))
    *deep, main = heads
    return single(main) + 0.33 * sum(single(o) for o in deep)


# --- Workloads (the same as src/cli/bench.rs) --------------------------------------------------

WORKLOADS = {
    # name: (model factory, input shape, loss, optimizer)
    "liver3d-forward": (lambda: CotNextUNet(3, 1, 1, 16), [1, 1, 128, 128, 128], None, "adamw"),
    "liver3d-step": (lambda: CotNextUNet(3, 1, 1, 16), [1, 1, 64, 64, 64], "dice_bce", "adamw"),
    "tumor2d-step": (lambda: CotNextUNet(2, 3, 1, 32), [16, 3, 256, 256], "dice_bce", "adamw"),
    "unet2d-classic-step": (lambda: UNet2DClassic(3, 3, 64), [4, 3, 128, 128], "ce", "adam"),
    "keras-unet2d-step": (lambda: KerasUNet2D(32, 1), [2, 1, 512, 512], "neg_dice", "adam"),
    "unet3d-3class-step": (lambda: UNet3D3Class(32, 1, 3), [2, 1, 96, 96, 96], "ce_weighted", "adam"),
    "res3dunet-step": (lambda: Res3DUNet(1, 1, 16, 0.2), [2, 1, 64, 64, 64], "deep", "adam"),
}

LEARNING_RATES = {"unet2d-classic-step": 1e-3, "keras-unet2d-step": 1e-5, "unet3d-3class-step": 1e-4}


class Workload:
    def __init__(self, name):
        factory, shape, self.loss, optimizer = WORKLOADS[name]
        torch.manual_seed(1)
        self.model = factory()
        self.x = torch.randn(shape)
        lr = LEARNING_RATES.get(name, 1e-3)
        params = self.model.parameters()
        self.opt = (torch.optim.AdamW(params, lr=lr, weight_decay=1e-5) if optimizer == "adamw"
                    else torch.optim.Adam(params, lr=lr))
        n = shape[0]
        spatial = shape[2:]
        if self.loss in ("ce", "ce_weighted"):
            ids = torch.arange(n * int(torch.tensor(spatial).prod())) // 97 % 3
            self.target = ids.reshape([n] + spatial)
            self.weights = torch.tensor([1.0, 1.0, 3.0]) if self.loss == "ce_weighted" else None
        else:
            mask = (torch.arange(n * int(torch.tensor(spatial).prod())) // 89 % 2).float()
            self.target = mask.reshape([n, 1] + spatial)

    def loss_of(self, out):
        if self.loss == "dice_bce":
            return soft_dice_bce(out, self.target)
        if self.loss in ("ce", "ce_weighted"):
            return F.cross_entropy(out, self.target, weight=self.weights)
        if self.loss == "neg_dice":
            return -batch_dice(out, self.target)
        return deep_supervision(out, self.target)

    def run(self):
        if self.loss is None:
            self.model.eval()
            with torch.no_grad():
                self.model(self.x)
            return
        self.model.train()
        self.opt.zero_grad()
        self.loss_of(self.model(self.x)).backward()
        self.opt.step()


# --- Op cases (the same as src/cli/op_cases.rs) -------------------------------------------------


def _conv_weights(family, c, rank):
    if family.startswith("conv-transpose"):
        k = 2 if family == "conv-transpose3d" else 4
        return torch.randn([c, c // 2] + [k] * (rank - 2))
    return torch.randn([c, c] + [3] * (rank - 2))


class OpCase:
    """One `op_cases::OpCase`: the op on fixed random inputs, forward or forward + backward
    through autograd with the loss sum(y * g)."""

    def __init__(self, family, shape, backward):
        torch.manual_seed(1)
        self.family, self.shape, self.backward = family, shape, backward
        self.params = []
        if family == "matmul":
            m, k, n = shape
            self.x, w = torch.randn(m, k), torch.randn(k, n)
            self.params = [w]
        else:
            self.x = torch.randn(shape)
            c = shape[1]
            if family.startswith("conv"):
                self.params = [_conv_weights(family, c, len(shape))]
            elif family.startswith(("groupnorm", "batchnorm")):
                self.params = [torch.ones(c), torch.zeros(c)]
            if family == "batchnorm2d":
                self.running = (torch.zeros(c), torch.ones(c))
        self.g = torch.randn(self.forward(self.x, self.params).detach().shape)

    def forward(self, x, p):
        f, spatial = self.family, self.shape[2:]
        if f == "matmul":
            return x @ p[0]
        if f in ("conv3d", "conv2d"):
            return (F.conv3d if f == "conv3d" else F.conv2d)(x, p[0], padding=1)
        if f == "conv-transpose3d":
            return F.conv_transpose3d(x, p[0], stride=2)
        if f == "conv-transpose2d":
            return F.conv_transpose2d(x, p[0], stride=2, padding=1)
        if f in ("groupnorm3d", "groupnorm2d"):
            return F.group_norm(x, 8, p[0], p[1], 1e-5)
        if f == "batchnorm2d":
            return F.batch_norm(x, *self.running, p[0], p[1], True, 0.1, 1e-5)
        if f == "softmax3d":
            return torch.softmax(x, -1)
        if f in ("maxpool3d", "maxpool2d"):
            return (F.max_pool3d if f == "maxpool3d" else F.max_pool2d)(x, 2)
        if f in ("upsample3d", "upsample2d"):
            mode = "trilinear" if f == "upsample3d" else "bilinear"
            return F.interpolate(x, size=[2 * s for s in spatial], mode=mode, align_corners=False)
        raise ValueError(f"unknown op family {f}")

    def run(self):
        if not self.backward:
            with torch.no_grad():
                self.forward(self.x, self.params)
            return
        x = self.x.detach().requires_grad_()
        p = [t.detach().requires_grad_() for t in self.params]
        (self.forward(x, p) * self.g).sum().backward()


def build(request):
    """The workload or op case a request names (ValueError when it names none)."""
    words = request.split()
    if words[0] == "op":
        if len(words) != 4 or words[3] not in ("forward", "forward+backward"):
            raise ValueError("an op request is `op FAMILY D0,D1,... forward|forward+backward`")
        shape = [int(d) for d in words[2].split(",")]
        return OpCase(words[1], shape, words[3] == "forward+backward")
    if request not in WORKLOADS:
        raise ValueError("unknown workload")
    return Workload(request)


def reset_peak_rss():
    """Restarts the kernel's peak-resident mark (VmHWM) from the current resident set (Linux)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss_bytes():
    """The process's peak resident set since the last reset, or None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def serve(threads):
    torch.set_num_threads(threads)
    current = None  # (name, built workload): one at a time, so an earlier one's memory is gone
    print(json.dumps({"ready": True, "torch": torch.__version__, "threads": threads}), flush=True)
    for line in sys.stdin:
        name = line.strip()
        if not name:
            continue
        if current is None or current[0] != name:
            current = None
            gc.collect()
            reset_peak_rss()
            try:
                current = (name, build(name))
            except (ValueError, KeyError, RuntimeError) as e:
                print(json.dumps({"workload": name, "error": str(e)}), flush=True)
                continue
            current[1].run()  # warm-up
        start = time.perf_counter()
        current[1].run()
        seconds = time.perf_counter() - start
        reply = {"workload": name, "seconds": seconds, "peak_rss_bytes": peak_rss_bytes()}
        print(json.dumps(reply), flush=True)


def read_safetensors(path):
    """Tensors and string metadata of a safetensors file (float32/float64 only)."""
    with open(path, "rb") as f:
        data = f.read()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    dtypes = {"F32": torch.float32, "F64": torch.float64}
    tensors = {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        raw = bytearray(data[8 + n + start:8 + n + end])
        tensors[name] = torch.frombuffer(raw, dtype=dtypes[info["dtype"]]).reshape(info["shape"])
    return tensors, meta


def fixture_model(meta):
    arch, cin, classes = meta["arch"], int(meta["in_channels"]), int(meta["n_classes"])
    if arch == "cotnext_unet":
        return CotNextUNet(int(meta["dims"]), cin, classes, int(meta["n_channels"]))
    base = int(meta["base"])
    return {
        "unet2d_classic": lambda: UNet2DClassic(cin, classes, base),
        "keras_unet2d": lambda: KerasUNet2D(base, cin),
        "unet3d_3class": lambda: UNet3D3Class(base, cin, classes),
        "res3dunet": lambda: Res3DUNet(cin, classes, base, float(meta.get("dropout", 0))),
    }[arch]()


def check(paths):
    """Scores this script's networks on the forward fixtures as `hepar verify` does."""
    worst = 0.0
    for path in paths:
        tensors, meta = read_safetensors(path)
        if meta.get("kind") != "forward":
            continue
        model = fixture_model(meta).double().eval()
        if "checkpoint" in meta:
            import os
            ckpt = os.path.join(os.path.dirname(path), meta["checkpoint"])
            state = torch.load(ckpt, map_location="cpu")
        else:
            state = {k[len("init."):]: v for k, v in tensors.items() if k.startswith("init.")}
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.endswith("num_batches_tracked")]
        if missing or unexpected:
            raise SystemExit(f"{path}: missing {missing[:3]}, unexpected {unexpected[:3]}")
        with torch.no_grad():
            out = model(tensors["input"].double())
        heads = list(out) if isinstance(out, tuple) else [out]
        pairs = [(heads[-1], tensors["expected_logits"])]
        pairs += [(heads[i], tensors[f"expected_deep.{i}"]) for i in range(len(heads) - 1)
                  if f"expected_deep.{i}" in tensors]
        rtol, atol = float(meta["rtol"]), float(meta["atol"])
        for a, r in pairs:
            score = ((a - r).norm() / (rtol * r.norm() + atol * r.numel() ** 0.5)).item()
            worst = max(worst, score)
            print(f"{path}: score {score:.4f}")
    print(f"worst score: {worst:.4f}")
    return 0 if worst <= 1.0 else 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--threads", type=int, default=2)
    c = sub.add_parser("check")
    c.add_argument("fixtures", nargs="+")
    args = parser.parse_args()
    if args.command == "serve":
        serve(args.threads)
    else:
        sys.exit(check(args.fixtures))


if __name__ == "__main__":
    main()
