//! Pixel space: the model-sized image in [0, 1] (fitted, grey replicated when the plan says so),
//! where attacks take their steps and eps is measured, and the differentiable map from it to
//! the model input, `(p · scale − mean) / std`, applied inside every forward pass.

use tch::{Device, Kind, Tensor};

use crate::data::{Image, InputPlan, Layout};
use crate::Error;

pub struct PixelInput {
    /// The plan with the identity normalisation: it only fits and lays out images.
    layout_only: InputPlan,
    scale: f64,
    mean: Tensor,
    std: Tensor,
    device: Device,
}

/// A batch in pixel space; rows past `real` are copies that fill a model's fixed batch size.
pub struct PixelBatch {
    pub pixels: Tensor,
    pub real: usize,
}

impl PixelInput {
    pub fn new(plan: &InputPlan, device: Device) -> Result<Self, Error> {
        let layout_only = InputPlan { scale: 1.0, mean: vec![0.0; plan.channels], std: vec![1.0; plan.channels], ..plan.clone() };
        let shape: [i64; 4] = match plan.layout {
            Layout::Nchw => [1, plan.channels as i64, 1, 1],
            Layout::Nhwc => [1, 1, 1, plan.channels as i64],
        };
        let per_channel = |v: &[f32]| Tensor::f_from_slice(v).and_then(|t| t.f_reshape(shape)).and_then(|t| t.f_to_device(device));
        let mean = per_channel(&plan.mean).map_err(Error::torch("preparing the input normalisation"))?;
        let std = per_channel(&plan.std).map_err(Error::torch("preparing the input normalisation"))?;
        Ok(PixelInput { layout_only, scale: plan.scale as f64, mean, std, device })
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// The batch size the model fixes, if it does.
    pub fn fixed_batch(&self) -> Option<usize> {
        self.layout_only.batch
    }

    /// Images per batch: the model's fixed batch size, or `preferred`.
    pub fn batch_size(&self, preferred: usize) -> usize {
        self.layout_only.batch.unwrap_or(preferred).max(1)
    }

    /// `images` as one pixel batch in the model's layout, filled up with copies of the last
    /// image when the model fixes a larger batch size.
    pub fn pixels(&self, images: &[Image]) -> Result<PixelBatch, Error> {
        let real = images.len();
        let mut images = images.to_vec();
        if let (Some(fixed), Some(last)) = (self.layout_only.batch, images.last().cloned()) {
            images.resize(fixed.max(real), last);
        }
        let (shape, values) = self.layout_only.batch(&images)?;
        let pixels = Tensor::f_from_slice(&values)
            .and_then(|t| t.f_reshape(shape.as_slice()))
            .and_then(|t| t.f_to_device(self.device))
            .map_err(Error::torch("building a pixel batch"))?;
        Ok(PixelBatch { pixels, real })
    }

    /// The model input for `pixels`; differentiable, so attacks see the normalisation.
    pub fn normalise(&self, pixels: &Tensor) -> Result<Tensor, tch::TchError> {
        pixels.f_to_kind(Kind::Float)?.f_mul_scalar(self.scale)?.f_sub(&self.mean)?.f_div(&self.std)
    }
}
