//! The candidate operations of a cell edge (DARTS's search space). Every operation maps
//! C channels at H x W to C channels at H x W (the cell's input adapter takes care of stride
//! and channel changes), and each is made of nodes plain ONNX has: depthwise Conv (group = C),
//! dilated Conv, BatchNormalization, Relu, MaxPool, AveragePool (count_include_pad = 0).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tch::nn::{self, Module, ModuleT};
use tch::Tensor;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    None,
    SkipConnect,
    MaxPool3x3,
    AvgPool3x3,
    SepConv3x3,
    SepConv5x5,
    DilConv3x3,
    DilConv5x5,
}

impl OpKind {
    pub const ALL: [OpKind; 8] = [
        OpKind::None,
        OpKind::SkipConnect,
        OpKind::MaxPool3x3,
        OpKind::AvgPool3x3,
        OpKind::SepConv3x3,
        OpKind::SepConv5x5,
        OpKind::DilConv3x3,
        OpKind::DilConv5x5,
    ];

    pub fn name(self) -> &'static str {
        match self {
            OpKind::None => "none",
            OpKind::SkipConnect => "skip_connect",
            OpKind::MaxPool3x3 => "max_pool_3x3",
            OpKind::AvgPool3x3 => "avg_pool_3x3",
            OpKind::SepConv3x3 => "sep_conv_3x3",
            OpKind::SepConv5x5 => "sep_conv_5x5",
            OpKind::DilConv3x3 => "dil_conv_3x3",
            OpKind::DilConv5x5 => "dil_conv_5x5",
        }
    }

    /// Builds the operation's layers under `path` for `c` channels.
    pub fn build(self, path: &nn::Path, c: i64) -> CandidateOp {
        match self {
            OpKind::None => CandidateOp::Zero,
            OpKind::SkipConnect => CandidateOp::Identity,
            OpKind::MaxPool3x3 => CandidateOp::MaxPool,
            OpKind::AvgPool3x3 => CandidateOp::AvgPool,
            OpKind::SepConv3x3 => CandidateOp::Convs(vec![dw_pw(&(path / "a"), c, 3, 1), dw_pw(&(path / "b"), c, 3, 1)]),
            OpKind::SepConv5x5 => CandidateOp::Convs(vec![dw_pw(&(path / "a"), c, 5, 1), dw_pw(&(path / "b"), c, 5, 1)]),
            OpKind::DilConv3x3 => CandidateOp::Convs(vec![dw_pw(&(path / "a"), c, 3, 2)]),
            OpKind::DilConv5x5 => CandidateOp::Convs(vec![dw_pw(&(path / "a"), c, 5, 2)]),
        }
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for OpKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        OpKind::ALL.iter().copied().find(|o| o.name() == s).ok_or_else(|| {
            let names: Vec<&str> = OpKind::ALL.iter().map(|o| o.name()).collect();
            format!("unknown operation `{s}`; the candidates are {}", names.join(", "))
        })
    }
}

/// ReLU, depthwise k x k conv (dilation d, "same" padding), pointwise 1x1 conv, BN: one half of
/// DARTS's separable conv, or the whole of its dilated conv.
#[derive(Debug)]
pub struct DwPw {
    pub depthwise: nn::Conv2D,
    pub pointwise: nn::Conv2D,
    pub bn: nn::BatchNorm,
    pub kernel: i64,
    pub dilation: i64,
}

fn dw_pw(path: &nn::Path, c: i64, kernel: i64, dilation: i64) -> DwPw {
    let depthwise = nn::conv2d(
        path / "dw",
        c,
        c,
        kernel,
        nn::ConvConfig { padding: dilation * (kernel - 1) / 2, dilation, groups: c, bias: false, ..Default::default() },
    );
    let pointwise = nn::conv2d(path / "pw", c, c, 1, nn::ConvConfig { bias: false, ..Default::default() });
    DwPw { depthwise, pointwise, bn: super::cell::batch_norm(&(path / "bn"), c), kernel, dilation }
}

impl DwPw {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.bn.forward_t(&self.pointwise.forward(&self.depthwise.forward(&x.relu())), train)
    }
}

/// One built candidate operation.
#[derive(Debug)]
pub enum CandidateOp {
    Zero,
    Identity,
    MaxPool,
    AvgPool,
    /// A chain of ReLU-dw-pw-BN stages.
    Convs(Vec<DwPw>),
}

impl CandidateOp {
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        match self {
            CandidateOp::Zero => x.zeros_like(),
            CandidateOp::Identity => x.shallow_clone(),
            CandidateOp::MaxPool => x.max_pool2d([3, 3], [1, 1], [1, 1], [1, 1], false),
            CandidateOp::AvgPool => x.avg_pool2d([3, 3], [1, 1], [1, 1], false, false, None::<i64>),
            CandidateOp::Convs(stages) => stages.iter().fold(x.shallow_clone(), |x, s| s.forward_t(&x, train)),
        }
    }
}

/// Parses the spec's operation list: known names, no duplicates, at least one op besides none.
pub fn parse_ops(names: &[String]) -> Result<Vec<OpKind>, String> {
    let mut ops = Vec::new();
    for name in names {
        let op: OpKind = name.parse()?;
        if ops.contains(&op) {
            return Err(format!("operation `{name}` is listed twice"));
        }
        ops.push(op);
    }
    if !ops.iter().any(|&o| o != OpKind::None) {
        return Err("the list needs at least one operation other than `none`".into());
    }
    Ok(ops)
}
