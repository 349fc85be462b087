//! Where the channel axis sits in a 4-D image batch.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The order of a 4-D image batch: channels first (PyTorch, most ONNX exports) or last
/// (TensorFlow/Keras exports, NumPy image arrays).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// (N, C, H, W)
    Nchw,
    /// (N, H, W, C)
    Nhwc,
}

impl Layout {
    /// The axis of the channels in a 4-D shape.
    pub fn channel_axis(self) -> usize {
        match self {
            Layout::Nchw => 1,
            Layout::Nhwc => 3,
        }
    }

    /// The axes of (height, width) in a 4-D shape.
    pub fn spatial_axes(self) -> (usize, usize) {
        match self {
            Layout::Nchw => (2, 3),
            Layout::Nhwc => (1, 2),
        }
    }
}

impl FromStr for Layout {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "nchw" => Ok(Layout::Nchw),
            "nhwc" => Ok(Layout::Nhwc),
            other => Err(format!("unknown layout `{other}`: expected nchw or nhwc")),
        }
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layout::Nchw => "NCHW",
            Layout::Nhwc => "NHWC",
        })
    }
}
