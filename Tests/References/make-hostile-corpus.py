#!/usr/bin/env python3
"""Writes Tests/CLITests/Hostile/configs/: legal JSON configs of small models with one hostile
number each (issue 21). Every file must end in exit 1 with a message naming the file and the
key — never a trap, never an unbounded allocation. HostileInputTests reads `expected.json`
(file -> the words the error must contain). Run from the repository root; needs no packages."""
import json, os

out = "Tests/CLITests/Hostile/configs"
os.makedirs(out, exist_ok=True)

unet2d = {"_class_name": "UNet2DModel", "sample_size": 8, "in_channels": 1, "out_channels": 1,
          "block_out_channels": [8, 16], "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
          "up_block_types": ["AttnUpBlock2D", "UpBlock2D"], "layers_per_block": 1, "norm_num_groups": 4,
          "attention_head_dim": 8}
unet1d = {"_class_name": "UNet1DModel", "sample_size": 256, "sample_rate": 16000, "in_channels": 1, "out_channels": 1,
          "extra_in_channels": 0, "time_embedding_type": "positional", "flip_sin_to_cos": True,
          "use_timestep_embedding": True, "act_fn": "silu", "freq_shift": 0, "block_out_channels": [8, 16],
          "down_block_types": ["DownResnetBlock1D", "DownResnetBlock1D"], "up_block_types": ["UpResnetBlock1D"],
          "mid_block_type": "MidResTemporalBlock1D", "out_block_type": "OutConv1DBlock", "layers_per_block": 0,
          "norm_num_groups": 8, "downsample_each_block": False, "num_class_embeds": 3}
video = dict(unet2d, _class_name="VideoUNetModel", num_frames=4)

huge = [16384] * 4
cases = {
    # name: (base, changes, words the error must contain)
    "unet2d-attn-norm-groups-0": (unet2d, {"attn_norm_num_groups": 0}, ["attn_norm_num_groups"]),
    "unet2d-attn-norm-groups-3": (unet2d, {"attn_norm_num_groups": 3}, ["attn_norm_num_groups"]),
    "unet2d-attn-norm-groups-negative": (unet2d, {"attn_norm_num_groups": -1}, ["attn_norm_num_groups"]),
    "unet2d-dropout-5": (unet2d, {"dropout": 5}, ["dropout"]),
    "unet2d-time-embedding-dim-negative": (unet2d, {"time_embedding_dim": -5}, ["time_embedding_dim"]),
    "unet2d-out-channels-2e62": (unet2d, {"out_channels": 2 ** 62}, ["out_channels"]),
    "unet2d-downsample-padding-negative": (unet2d, {"downsample_padding": -5}, ["downsample_padding"]),
    "unet2d-sample-size-33": (unet2d, {"sample_size": 33}, ["sample_size"]),
    "unet2d-sample-size-100000": (unet2d, {"sample_size": 100000}, ["sample_size"]),
    "unet2d-block-out-channels-2e40": (unet2d, {"block_out_channels": [2 ** 40, 16]}, ["block_out_channels"]),
    "unet2d-num-class-embeds-1e12": (unet2d, {"num_class_embeds": 10 ** 12}, ["num_class_embeds"]),
    "unet2d-layers-per-block-100000": (unet2d, {"layers_per_block": 100000}, ["layers_per_block"]),
    "unet2d-norm-eps-negative": (unet2d, {"norm_eps": -1}, ["norm_eps"]),
    "unet2d-norm-groups-0": (unet2d, {"norm_num_groups": 0}, ["norm_num_groups"]),
    "unet2d-attention-head-dim-0": (unet2d, {"attention_head_dim": 0}, ["attention_head_dim"]),
    "unet2d-attention-head-dim-3": (unet2d, {"attention_head_dim": 3}, ["attention_head_dim"]),
    "unet2d-mid-block-scale-0": (unet2d, {"mid_block_scale_factor": 0}, ["mid_block_scale_factor"]),
    "unet2d-learned-timesteps-1e12": (unet2d, {"time_embedding_type": "learned", "num_train_timesteps": 10 ** 12}, ["num_train_timesteps"]),
    "unet2d-in-range-but-terabytes": (unet2d, {"block_out_channels": huge, "layers_per_block": 64,
                                               "down_block_types": ["DownBlock2D"] * 4, "up_block_types": ["UpBlock2D"] * 4,
                                               "sample_size": 64}, ["would need", "memory budget"]),
    "unet2d-class-unet3d": (unet2d, {"_class_name": "UNet3DModel"}, ["UNet3DModel"]),
    "unet1d-block-out-channels-2e40": (unet1d, {"block_out_channels": [2 ** 40, 16]}, ["block_out_channels"]),
    "unet1d-in-channels-negative": (unet1d, {"in_channels": -1}, ["in_channels"]),
    "unet1d-sample-size-0": (unet1d, {"sample_size": 0}, ["sample_size"]),
    "unet1d-num-class-embeds-1e12": (unet1d, {"num_class_embeds": 10 ** 12}, ["num_class_embeds"]),
    "unet1d-layers-per-block-100000": (unet1d, {"layers_per_block": 100000}, ["layers_per_block"]),
    "unet1d-sample-rate-0": (unet1d, {"sample_rate": 0}, ["sample_rate"]),
    "video-num-frames-100000": (video, {"num_frames": 100000}, ["num_frames"]),
    "video-temporal-head-dim-3": (video, {"temporal_attention_head_dim": 3}, ["temporal_attention_head_dim"]),
    "video-dropout-5": (video, {"dropout": 5}, ["dropout"]),
}
expected = {}
for name, (base, changes, words) in sorted(cases.items()):
    with open(f"{out}/{name}.json", "w") as f:
        json.dump(dict(base, **changes), f, indent=1, sort_keys=True)
        f.write("\n")
    expected[name + ".json"] = words
with open(f"{out}/expected.json", "w") as f:
    json.dump(expected, f, indent=1, sort_keys=True)
    f.write("\n")
# The untouched bases: they must load (the corpus tests its mutations, not broken bases).
for name, base in [("base-unet2d", unet2d), ("base-unet1d", unet1d), ("base-video", video)]:
    with open(f"{out}/{name}.json", "w") as f:
        json.dump(base, f, indent=1, sort_keys=True)
        f.write("\n")
