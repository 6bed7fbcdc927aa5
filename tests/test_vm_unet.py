"""VM-UNet: the equivalence contract with the official model, its ImageNet initialisation, the converter, sizes.

The official side is written here from the official code's semantics (JCruan519/VM-UNet models/vmunet/vmamba.py:
VSSM with layers / layers_up, PatchMerging2D, PatchExpand2D, Final_PatchExpand2D; vmunet.py: VMUNet.load_from) with
plain torch ops in float64, on random state dicts with the official key names and shapes; the v0 blocks are
test_vmamba's.
"""
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from test_vmamba import ln_last, official_block_v0, official_state_dict

from mmssm.kernels.testing import assert_close
from mmssm.models.backbones.vm_unet import VMUNet, convert_vmunet
from mmssm.models.backbones.vmamba import V0_RELEASE, VMamba, convert_vmamba
from mmssm.models.utils import CheckpointMismatchError, load_state_dict_checked
from mmssm.registry import MODELS
from mmssm.testing.scripts import run_script

TINY = dict(embed_dims=16, depths=(1, 1, 2, 1), decoder_depths=(1, 2, 1, 1), d_state=4)


# --------------------------------------------------------------------------------------------------------------
# the official layout and forward, independent of mmssm.models

def official_vmunet_state_dict(arch, num_classes=1, seed=0, device='cpu'):
    """Random VSSM (VM-UNet) weights in the current official block names (``norm`` / ``op``), without ``vmunet.``."""
    dims = [arch['embed_dims'] * 2 ** i for i in range(4)]
    blocks = dict(V0_RELEASE, **{k: v for k, v in arch.items() if k not in ('embed_dims', 'depths', 'decoder_depths')})
    sd = official_state_dict(dict(blocks, embed_dims=dims[0], depths=arch['depths']), out_indices=(), seed=seed,
                             device=device)
    generator = torch.Generator().manual_seed(seed + 1) if device != 'meta' else None

    def rand(*shape, scale=0.2, offset=0.0):
        if device == 'meta':
            return torch.empty(shape, device='meta')
        return torch.randn(shape, generator=generator, dtype=torch.float64) * scale + offset

    for i, (dim, depth) in enumerate(zip(dims[::-1], arch['decoder_depths'])):
        stage = official_state_dict(dict(blocks, embed_dims=dim, depths=(depth,)), out_indices=(),
                                    seed=seed + 10 + i, device=device)
        sd.update({f'layers_up.{i}.' + k[len('layers.0.'):]: v for k, v in stage.items()
                   if k.startswith('layers.0.blocks.')})
        if i > 0:
            sd.update({f'layers_up.{i}.upsample.expand.weight': rand(4 * dim, 2 * dim, scale=(2 * dim) ** -0.5),
                       f'layers_up.{i}.upsample.norm.weight': rand(dim, offset=1),
                       f'layers_up.{i}.upsample.norm.bias': rand(dim)})
    quarter = dims[0] // 4
    sd.update({'final_up.expand.weight': rand(4 * dims[0], dims[0], scale=dims[0] ** -0.5),
               'final_up.norm.weight': rand(quarter, offset=1), 'final_up.norm.bias': rand(quarter),
               'final_conv.weight': rand(num_classes, quarter, 1, 1), 'final_conv.bias': rand(num_classes)})
    return sd


def legacy_names(sd):
    """The names of VM-UNet's code and of the Vanilla VMamba files it starts from: ``ln_1`` / ``self_attention`` in
    blocks, ``patch_embed.proj`` / ``patch_embed.norm``."""
    renamed = {}
    for key, value in sd.items():
        key = key.replace('.norm.', '.ln_1.').replace('.op.', '.self_attention.') if '.blocks.' in key else key
        renamed[key.replace('patch_embed.0.', 'patch_embed.proj.').replace('patch_embed.2.', 'patch_embed.norm.')] = value
    return renamed


def as_released(sd):
    """A trained VM-UNet's state dict: legacy names under ``vmunet.``."""
    return {'vmunet.' + k: v for k, v in legacy_names(sd).items()}


def patch_expand(x, sd, p, scale):
    """(B, H, W, C) -> (B, s*H, s*W, C/s): Linear, 'b h w (p1 p2 c) -> b (h p1) (w p2) c', LayerNorm."""
    B, H, W, C = x.shape
    x = F.linear(x, sd[p + 'expand.weight']).reshape(B, H, W, scale, scale, C // scale)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(B, H * scale, W * scale, C // scale)
    return ln_last(x, sd, p + 'norm')


def official_vmunet(sd, x, arch):
    """VSSM.forward of VM-UNet: logits (B, num_classes, H, W) (VMUNet applies a sigmoid for one class)."""
    x = F.conv2d(x, sd['patch_embed.0.weight'], sd['patch_embed.0.bias'], stride=4).permute(0, 2, 3, 1)
    x = ln_last(x, sd, 'patch_embed.2')
    skips = []
    for i, depth in enumerate(arch['depths']):
        skips.append(x)
        for j in range(depth):
            x = official_block_v0(x, sd, f'layers.{i}.blocks.{j}.')
        if i < 3:  # PatchMerging2D
            x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
            x = F.linear(ln_last(x, sd, f'layers.{i}.downsample.norm'), sd[f'layers.{i}.downsample.reduction.weight'])
    for i, depth in enumerate(arch['decoder_depths']):
        if i > 0:
            x = patch_expand(x + skips[-i], sd, f'layers_up.{i}.upsample.', 2)
        for j in range(depth):
            x = official_block_v0(x, sd, f'layers_up.{i}.blocks.{j}.')
    x = patch_expand(x, sd, 'final_up.', 4).permute(0, 3, 1, 2)
    return F.conv2d(x, sd['final_conv.weight'], sd['final_conv.bias'])


# --------------------------------------------------------------------------------------------------------------
# ours

def build_segmentor(arch, num_classes=1):
    quarter = arch['embed_dims'] // 4
    binary = dict(num_classes=2, out_channels=1, threshold=0.5) if num_classes == 1 else dict(num_classes=num_classes)
    return MODELS.build(dict(
        type='mmseg.EncoderDecoder',
        backbone=dict(type='mmssm.VMUNet', arch=arch),
        decode_head=dict(type='mmseg.FCNHead', in_channels=quarter, channels=quarter, num_convs=0,
                         concat_input=False, dropout_ratio=0.0, **binary,
                         loss_decode=dict(type='mmseg.CrossEntropyLoss', use_sigmoid=num_classes == 1))))


@pytest.mark.parametrize('num_classes', [1, 9], ids=['ISIC', 'Synapse'])
def test_converted_official_checkpoint_gives_official_logits(num_classes):
    images = torch.randn(2, 3, 64, 96, dtype=torch.float64)  # stage maps 16x24, 8x12, 4x6, 2x3
    official = official_vmunet_state_dict(TINY, num_classes)
    model = build_segmentor(TINY, num_classes).eval()
    load_state_dict_checked(model, convert_vmunet({'model_state_dict': as_released(official)}))
    with torch.no_grad():
        ours = model.encode_decode(images.float(), [dict(img_shape=(64, 96))])
    assert_close(ours, official_vmunet(official, images, TINY), torch.float32, name='logits')


def test_converter_rejects_unknown_keys():
    released = as_released(official_vmunet_state_dict(TINY, device='meta'))
    with pytest.raises(ValueError, match=r"not official VM-UNet keys.*'layers_up\.0\.mystery\.weight'"):
        convert_vmunet({**released, 'vmunet.layers_up.0.mystery.weight': torch.zeros(1)})


def test_pretrained_init_mirrors_the_encoder_into_the_decoder(tmp_path):
    imagenet_arch = dict(V0_RELEASE, embed_dims=16, depths=(2, 2, 3, 2), d_state=4)  # deeper than TINY
    imagenet = official_state_dict(imagenet_arch, num_classes=5)
    path = tmp_path / 'vmamba_v0_imagenet.pth'
    torch.save({'model': legacy_names(imagenet)}, path)  # as the Vanilla VMamba file VM-UNet starts from
    model = VMUNet(TINY, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    ours = model.state_dict()
    theirs = {k[len('backbone.'):]: v for k, v in convert_vmamba(imagenet).items() if k.startswith('backbone.')}
    for key in ('stages.2.blocks.1.ss2d.A_logs', 'stages.0.downsample.reduction.weight', 'patch_embed.conv1.weight'):
        assert torch.equal(ours['encoder.' + key], theirs[key].float()), key
    # decoder stage k holds encoder stage 3 - k's first blocks: decoder 1 (two blocks) <- stage 2
    for block in (0, 1):
        assert torch.equal(ours[f'decoder.1.blocks.{block}.ss2d.x_proj_weight'],
                           theirs[f'stages.2.blocks.{block}.ss2d.x_proj_weight'].float())
    assert torch.equal(ours['decoder.3.blocks.0.norm1.weight'], theirs['stages.0.blocks.0.norm1.weight'].float())

    del imagenet['layers.3.blocks.0.op.Ds']  # needed by encoder stage 3 and decoder stage 0
    torch.save({'model': imagenet}, path)
    with pytest.raises(CheckpointMismatchError, match=r'decoder\.0\.blocks\.0\.ss2d\.Ds'):
        VMUNet(TINY, init_cfg=dict(type='Pretrained', checkpoint=str(path))).init_weights()


def test_param_count_matches_official():
    arch = VMUNet.arch_zoo['vm-unet']
    official = sum(v.numel() for v in official_vmunet_state_dict(arch, device='meta').values())
    with torch.device('meta'):
        model = build_segmentor(arch)
    ours = sum(p.numel() for p in model.parameters())
    assert ours == official
    assert round(official / 1e6, 2) == 27.43  # VM-UNet paper, Table 1


def test_arch_errors_and_input_checks():
    with pytest.raises(ValueError, match='one depth per encoder stage'):
        VMUNet(dict(embed_dims=16, depths=(1, 1, 1, 1), decoder_depths=(1, 1)))
    with pytest.raises(ValueError, match=r'expects \(batch, 3, H, W\) images with H and W multiples of 32'):
        VMUNet(TINY)(torch.randn(1, 1, 64, 64))
    with pytest.raises(ValueError, match=r'multiples of 32.*got \(1, 3, 64, 48\)'):
        VMUNet(TINY)(torch.randn(1, 3, 64, 48))
    assert isinstance(VMUNet(TINY).encoder, VMamba)


def test_converter_tool_writes_an_mmseg_checkpoint(tmp_path):
    tool = Path(__file__).resolve().parents[1] / 'tools/model_converters/vmunet2mmssm.py'
    official = as_released({k: torch.zeros(v.shape) for k, v in
                            official_vmunet_state_dict(VMUNet.arch_zoo['vm-unet'], device='meta').items()})
    src, dst = tmp_path / 'best.pth', tmp_path / 'converted.pth'
    torch.save({'model_state_dict': official, 'epoch': 300}, src)
    run_script(tool, src, dst)
    state_dict = torch.load(dst, map_location='cpu')['state_dict']
    assert {k.split('.')[0] for k in state_dict} == {'backbone', 'decode_head'}
    load_state_dict_checked(build_segmentor(VMUNet.arch_zoo['vm-unet']), state_dict)
    del official['vmunet.layers_up.1.upsample.norm.bias']
    torch.save({'model_state_dict': official}, src)
    with pytest.raises(SystemExit, match=r'decoder\.1\.upsample\.norm\.bias'):
        run_script(tool, src, dst)

def test_config_loss_is_the_official_bce_plus_dice():
    from mmengine.registry import DefaultScope
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    from mmssm.apis import load_config
    config = Path(__file__).resolve().parents[1] / 'configs/vm_unet/vm-unet_1xb32-300e_isic2018-256x256.py'
    with DefaultScope.overwrite_default_scope('mmseg'):  # the config's scope: its loss types are mmseg's
        head = MODELS.build(dict(load_config(str(config)).model.decode_head, type='mmseg.FCNHead', in_channels=4,
                                 channels=4))
    logits = torch.randn(3, 1, 16, 16, dtype=torch.float64)
    labels = torch.randint(0, 2, (3, 16, 16))
    samples = [SegDataSample(gt_sem_seg=PixelData(data=label[None])) for label in labels]
    losses = head.loss_by_feat(logits, samples)
    # VM-UNet's BceDiceLoss on the sigmoid output: BCE over all pixels + 1 - per-image Dice (smooth 1), batch mean
    prob, target = logits.sigmoid().flatten(1), labels.flatten(1).double()
    dice = (2 * (prob * target).sum(1) + 1) / (prob.sum(1) + target.sum(1) + 1)
    official = F.binary_cross_entropy(prob, target) + 1 - dice.mean()
    assert set(losses) == {'loss_ce', 'loss_dice', 'acc_seg'}
    assert_close(losses['loss_ce'] + losses['loss_dice'], official, torch.float32, name='BCE + Dice')  # mmseg: fp32 labels
    # mmseg's own DiceLoss scores a one-channel output against the background: not VM-UNet's loss
    mmseg_dice = MODELS.build(dict(type='mmseg.DiceLoss', use_sigmoid=True, naive_dice=True, eps=1.0))
    assert not torch.allclose(mmseg_dice(logits, labels), losses['loss_dice'])


@pytest.mark.parametrize('name', ['vm_unet/vm-unet_1xb32-300e_isic2018-256x256.py',
                                  'vm_unet/vm-unet_1xb32-300e_synapse-224x224.py',
                                  'msvm_unet/msvm-unet_1xb32-300e_synapse-224x224.py',
                                  'msvm_unet/msvm-unet_1xb32-300e_acdc-224x224.py'])
def test_config_classifier_keeps_the_pytorch_default_init(name):
    # the official final 1x1 conv of VM-UNet and MSVM-UNet is a plain nn.Conv2d with no init of its own; mmseg's
    # heads draw conv_seg from a normal of std 0.01 with zero bias unless init_cfg is None
    from mmengine.registry import DefaultScope

    from mmssm.apis import load_config
    config = Path(__file__).resolve().parents[1] / 'configs' / name
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmseg'):
        head = MODELS.build(dict(load_config(str(config)).model.decode_head, type='mmseg.FCNHead'))
    head.init_weights()
    bound = head.conv_seg.in_channels ** -0.5  # nn.Conv2d's default: U(-bound, bound) weights and biases (1x1)
    assert head.conv_seg.bias.any() and 0.5 * bound < head.conv_seg.weight.abs().max() <= bound
