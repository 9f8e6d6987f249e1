"""training/profiling.py: the categories, and the step summary from profiler events (the
profiles of real steps: tests/benchmarks/test_throughput.py and the trainer's)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from torch.autograd import DeviceType

from ppi_dist.training import profiling
from ppi_dist.training.profiling import Event, category, merged_length, ops_per_phase, summarise


def test_profile_categories_of_gpu_kernels_and_cpu_ops():
    names = {
        "fmha_cutlassF_bf16_aligned_64x64_rf_sm80": "attention",
        "cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16": "attention",
        "aten::_scaled_dot_product_flash_attention_for_cpu": "attention",
        "nvjet_tst_128x256_64x4_1x2_h_bz_coopA_NNT": "matmul",
        "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64": "matmul",
        "aten::mm": "matmul",
        "void at::native::multi_tensor_apply_kernel<FusedAdamMathFunctor<float, 4>>": "optimizer",
        "Memcpy HtoD (Pageable -> Device)": "copy",
        "void at::native::vectorized_layer_norm_kernel<float>": "norm/reduction",
        "void at::native::vectorized_elementwise_kernel<4, CUDAFunctor_add<float>>": "elementwise",
        "triton_poi_fused_add_gelu_0": "elementwise",
        "aten::mul": "elementwise",
        "train_step": "python",
        "## Call CompiledFxGraph abc ##": "compiled graph",
    }
    assert {name: category(name) for name in names} == names


def test_profile_summary_splits_host_and_device_time():
    """Two steps of a fake CUDA profile (microseconds): ranges, kernels, one sync each."""
    events = []
    for offset in (0, 1000):
        events += [
            Event("profile_step", False, offset, offset + 800, 0),
            Event("train_step", False, offset, offset + 500, 100),
            Event("cudaStreamSynchronize", False, offset + 300, offset + 400, 100),
            Event("cudaDeviceSynchronize", False, offset + 500, offset + 800, 300),  # ours
            Event("aten::_local_scalar_dense", False, offset + 290, offset + 410, 10),
            Event("nvjet_gemm", True, offset + 50, offset + 350, 300),
            Event("fmha_cutlassF", True, offset + 300, offset + 600, 300),  # overlaps: merged
            Event("vectorized_elementwise_kernel", True, offset + 700, offset + 800, 100),
        ]
    got = summarise(events, steps=2, on_cuda=True)
    assert got["profiled_wall_s"] == pytest.approx(800e-6)
    assert got["sync_wait_s"] == pytest.approx(100e-6)  # the step's sync, not our final one
    assert got["host_s"] == pytest.approx(400e-6)
    assert got["drain_s"] == pytest.approx(300e-6)
    assert got["device_busy_s"] == pytest.approx(650e-6)  # 50-600 and 700-800
    assert got["syncs_per_step"] == {"aten::_local_scalar_dense": 1, "cudaStreamSynchronize": 1}
    assert got["shares"] == pytest.approx(
        {"matmul": 3 / 7, "attention": 3 / 7, "elementwise": 1 / 7}
    )
    assert [row[0] for row in got["top"]][-1] == "vectorized_elementwise_kernel"
    assert merged_length([(0, 2), (1, 3), (5, 6)]) == 4


def test_profile_events_leave_out_our_ranges_on_the_gpu_timeline():
    def event(name, device, start, end, annotation=False, self_cpu=0.0):
        return SimpleNamespace(
            name=name,
            device_type=device,
            is_user_annotation=annotation,
            time_range=SimpleNamespace(start=start, end=end),
            self_cpu_time_total=self_cpu,
        )

    profiled = SimpleNamespace(
        events=lambda: [
            event("train_step", DeviceType.CPU, 0, 10, annotation=True, self_cpu=4),
            event("train_step", DeviceType.CUDA, 2, 12, annotation=True),  # spans kernels + gaps
            event("nvjet_gemm", DeviceType.CUDA, 3, 5),
        ]
    )
    assert profiling.events_of(profiled) == [
        Event("train_step", False, 0, 10, 4),
        Event("nvjet_gemm", True, 3, 5, 2),
    ]


def test_operators_per_step_are_counted_by_phase_once_per_dispatch():
    """Only dispatched aten ops count (not their nested aten calls); the backward is what
    autograd's engine runs, the optimizer what follows it in the step."""
    events = []
    for offset in (0, 100):
        events += [
            Event("aten::linear", False, offset + 1, offset + 5, 1, dispatched=True),
            Event("aten::addmm", False, offset + 2, offset + 4, 1),  # inside linear
            Event("aten::mul", False, offset + 6, offset + 7, 1, dispatched=True),
            Event("aten::mm", False, offset + 10, offset + 11, 1, True, "backward"),
            Event("aten::norm", False, offset + 20, offset + 21, 1, dispatched=True),  # clip
            Event("aten::_fused_adamw_", False, offset + 30, offset + 31, 1, True, "optimizer"),
            Event("aten::mul", False, offset + 60, offset + 61, 1, dispatched=True),  # outside
        ]
    inside = [(0, 50), (100, 150)]
    assert ops_per_phase(events, inside, steps=2) == {"forward": 2, "backward": 1, "optimizer": 2}
