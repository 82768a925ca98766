//! Flags every subcommand shares, turned into checked settings before any tensor is touched.
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use clap::Args;
use lm::{LoadOptions, Precision};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// Log lines on stderr, coloured only when stderr is a terminal (a file or a pipe gets plain
/// text, not escape codes).
pub fn init_logging() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUDDER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .try_init();
}

/// The error and its causes on one line, each said once: many errors already print their
/// cause (`path: No such file or directory`), and repeating it would double the line.
pub fn error_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain().map(|c| c.to_string()) {
        if line.contains(&cause) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&cause);
    }
    line
}

/// `--device` and `--dtype`.
#[derive(Args, Debug, Clone)]
pub struct DeviceArgs {
    /// cpu, cuda or cuda:N. Default: cuda when built with it and a GPU is present, else cpu.
    #[arg(long)]
    pub device: Option<String>,
    /// Activation dtype: f32, bf16 or f16 (weights and optimizer state stay f32). Default f32.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
}

impl DeviceArgs {
    pub fn device(&self) -> Result<Device> {
        parse_device(self.device.as_deref())
    }

    pub fn dtype(&self) -> Result<DType> {
        match self.dtype.as_str() {
            "f32" | "float32" => Ok(DType::F32),
            "bf16" | "bfloat16" => Ok(DType::BF16),
            "f16" | "float16" => Ok(DType::F16),
            other => bail!("--dtype: `{other}` is not one of f32, bf16, f16"),
        }
    }

    pub fn load_options(&self, trainable: bool) -> Result<LoadOptions> {
        Ok(LoadOptions {
            device: self.device()?,
            precision: Precision {
                params: DType::F32,
                compute: self.dtype()?,
            },
            trainable,
        })
    }
}

pub fn parse_device(spec: Option<&str>) -> Result<Device> {
    match spec {
        None => Ok(cuda_device(0).unwrap_or(Device::Cpu)),
        Some("cpu") => Ok(Device::Cpu),
        Some(s) if s == "cuda" || s.starts_with("cuda:") => {
            let n: usize = s
                .strip_prefix("cuda:")
                .map(|n| n.parse())
                .transpose()
                .with_context(|| format!("--device: bad GPU index in `{s}`"))?
                .unwrap_or(0);
            cuda_device(n).with_context(|| {
                format!("--device {s}: CUDA is unavailable (build with `--features cuda` and run on a GPU machine)")
            })
        }
        Some(other) => bail!("--device: `{other}` is not one of cpu, cuda, cuda:N"),
    }
}

/// One `Device` per GPU for the whole process. candle gives every `Device::new_cuda` its own
/// id and refuses ops between tensors of two ids, so models loaded one after the other (a
/// policy, its reference, a reward model) must share this one. Errs in CPU builds.
fn cuda_device(n: usize) -> candle_core::Result<Device> {
    static DEVICES: OnceLock<Mutex<HashMap<usize, Device>>> = OnceLock::new();
    let mut made = DEVICES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(d) = made.get(&n) {
        return Ok(d.clone());
    }
    let d = Device::new_cuda(n)?;
    made.insert(n, d.clone());
    Ok(d)
}

/// Loads `--model`, naming it in the error.
pub fn load_model(spec: &str, opts: &LoadOptions) -> Result<lm::Pretrained> {
    lm::load(spec, opts).with_context(|| format!("loading model `{spec}`"))
}

/// glibc serves blocks over its mmap threshold with a fresh mmap and unmaps them on free, so
/// every large tensor (logits, activations) re-faults its pages each step: about 1.7x slower
/// training here. Keep large blocks in the heap and never trim it.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called once before any threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

/// candle's element-wise thread pool spins 25,000 times before parking an idle worker; with as
/// many threads as cores, that spinning takes the cores the GEMM threads (rayon) need next: SFT
/// SmolLM2-135M here ran 10% (full) to 16% (LoRA) faster at 1,000 (1 and 100 gave the same).
/// A value the user set wins. Edition 2021: `set_var` is safe, but must run before any thread
/// reads the environment, so this is the first thing `main` does.
pub fn tune_threads() {
    const VAR: &str = "CANDLE_BARRIER_POOL_SPIN_LIMIT";
    if std::env::var_os(VAR).is_none() {
        std::env::set_var(VAR, "1000");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_line_says_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let e = anyhow::Error::new(io)
            .context("x.jsonl: No such file")
            .context("sft");
        assert_eq!(error_line(&e), "sft: x.jsonl: No such file");
    }

    #[test]
    fn device_specs() {
        assert!(matches!(parse_device(Some("cpu")), Ok(Device::Cpu)));
        let err = |s| format!("{:#}", parse_device(Some(s)).unwrap_err());
        assert!(err("gpu").contains("not one of cpu, cuda, cuda:N"));
        assert!(err("cuda:x").contains("bad GPU index"));
        #[cfg(not(feature = "cuda"))]
        {
            assert!(err("cuda:1").contains("--features cuda"));
            assert!(matches!(parse_device(None), Ok(Device::Cpu)));
        }
        let d = DeviceArgs {
            device: None,
            dtype: "bf16".into(),
        };
        assert_eq!(d.dtype().unwrap(), DType::BF16);
        let d = DeviceArgs {
            dtype: "fp8".into(),
            ..d
        };
        assert!(format!("{:#}", d.dtype().unwrap_err()).contains("f32, bf16, f16"));
    }
}
