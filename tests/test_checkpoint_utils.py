import pytest
import torch
from torch import nn

from mmssm.models.utils import CheckpointMismatchError, load_pretrained, load_state_dict_checked


def tiny_model():
    return nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))


def test_exact_state_dict_loads_values():
    source, target = tiny_model(), tiny_model()
    assert load_state_dict_checked(target, source.state_dict()) == []
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_mismatch_lists_every_kind_of_bad_key():
    state = tiny_model().state_dict()
    del state['0.bias']
    state['extra.weight'] = torch.zeros(1)
    state['2.weight'] = torch.zeros(5, 4)
    with pytest.raises(CheckpointMismatchError) as info:
        load_state_dict_checked(tiny_model(), state, source='ckpt.pth')
    message = str(info.value)
    assert 'ckpt.pth' in message
    assert info.value.missing == ['0.bias'] and '0.bias' in message
    assert info.value.unexpected == ['extra.weight'] and 'extra.weight' in message
    assert len(info.value.mismatched) == 1 and '2.weight: (5, 4) vs (2, 4)' in message


def test_failed_load_leaves_module_untouched():
    target = tiny_model()
    before = {k: v.clone() for k, v in target.state_dict().items()}
    state = tiny_model().state_dict()
    state['unknown'] = torch.zeros(1)
    with pytest.raises(CheckpointMismatchError):
        load_state_dict_checked(target, state)
    for key, value in before.items():
        assert torch.equal(target.state_dict()[key], value), key


def test_allow_missing_patterns():
    target = tiny_model()
    head_before = target[2].weight.clone()
    state = {k: v for k, v in tiny_model().state_dict().items() if not k.startswith('2.')}
    assert load_state_dict_checked(target, state, allow_missing=('2.*',)) == ['2.bias', '2.weight']
    assert torch.equal(target[2].weight, head_before)
    with pytest.raises(CheckpointMismatchError, match='2.weight'):
        load_state_dict_checked(target, state, allow_missing=('1.*',))


@pytest.mark.parametrize('wrapper', ['state_dict', 'model', None])
def test_load_pretrained_strips_prefix_and_converts(tmp_path, wrapper):
    source = tiny_model()
    weights = {f'backbone.{k}': v for k, v in source.state_dict().items()}
    weights['head.fc.weight'] = torch.zeros(1)
    path = tmp_path / 'ckpt.pth'
    torch.save({wrapper: weights, 'meta': {}} if wrapper else weights, path)
    target = tiny_model()
    load_pretrained(target, str(path), prefix='backbone.')
    assert torch.equal(target[0].weight, source[0].weight)

    renamed = {k.replace('backbone.', 'official.'): v for k, v in weights.items() if k.startswith('backbone.')}
    torch.save(renamed, path)
    target = tiny_model()
    load_pretrained(target, str(path), convert=lambda sd: {k.replace('official.', ''): v for k, v in sd.items()})
    assert torch.equal(target[2].bias, source[2].bias)
    with pytest.raises(CheckpointMismatchError, match='official.0.weight'):
        load_pretrained(tiny_model(), str(path))
    with pytest.raises(ValueError, match="no key starting with 'backbone.'"):
        load_pretrained(tiny_model(), str(path), prefix='backbone.')
