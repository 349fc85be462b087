//! The model input: the spec's `input` section, resolved against the model's declared input
//! shape and the data, and the conversion of images into batches the model accepts.
//!
//! Resolution happens once, before any work, so that a model/data mismatch is reported in one
//! message naming the model input, both shapes and the spec key that would fix it, instead of
//! as an onnxruntime shape error halfway through an evaluation.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::dataset::Dataset;
use super::image::Image;
use super::{DataError, Layout};

/// The `input` section of a spec: how images become model input. Everything is optional;
/// what is left out comes from the model's input shape or the data.
#[derive(Deserialize, Serialize, Default, Debug, Clone, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// `nchw` or `nhwc`; default: from the model's input shape (where the 1 or 3 sits), else nchw.
    pub layout: Option<Layout>,
    /// 1 or 3; default: the model's channel dimension, else the data's.
    pub channels: Option<usize>,
    /// `[height, width]` the model takes; default: the model's, else the data's.
    pub size: Option<[usize; 2]>,
    /// Multiplier applied to pixel values in [0, 1] before normalisation (255 for models trained
    /// on 0..255 values); default 1.
    pub scale: Option<f32>,
    /// Per-channel (or one shared) mean subtracted after scaling; default 0.
    pub mean: Option<Vec<f32>>,
    /// Per-channel (or one shared) standard deviation divided by after the mean; default 1.
    pub std: Option<Vec<f32>>,
    /// How images of another size are fitted to the model's; default `exact`.
    pub fit: Option<Fit>,
    /// Replicate grey images to 3 channels for an RGB model; default false.
    pub grey_to_rgb: Option<bool>,
}

/// How an image of another size than the model's is made to fit.
#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq, Default, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Fit {
    /// Sizes must be equal.
    #[default]
    Exact,
    /// Centre the image on a black canvas of the model's size (e.g. 28x28 Fashion-MNIST in a
    /// 32x32 model); padded pixels are 0 before scaling and normalisation, like
    /// torchvision's `Pad` before `Normalize`.
    Pad,
    /// Bilinear resampling with half-pixel centres and no antialiasing (PyTorch's
    /// `interpolate(mode="bilinear", align_corners=False)`).
    Resize,
}

impl FromStr for Fit {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "exact" => Ok(Fit::Exact),
            "pad" => Ok(Fit::Pad),
            "resize" => Ok(Fit::Resize),
            other => Err(format!("unknown fit `{other}`: expected exact, pad or resize")),
        }
    }
}

impl fmt::Display for Fit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fit::Exact => "exact",
            Fit::Pad => "pad",
            Fit::Resize => "resize",
        })
    }
}

/// The model input as the model declares it: its name and shape, `None` for a dimension the
/// model leaves open (symbolic or unknown) and for a shape it does not declare at all.
#[derive(Debug, Clone, Copy)]
pub struct ModelInput<'a> {
    pub name: &'a str,
    pub shape: Option<&'a [Option<i64>]>,
}

/// How images of a dataset become the model's input, fully resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InputPlan {
    /// The model input's name.
    pub input: String,
    pub layout: Layout,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// The batch size when the model fixes it.
    pub batch: Option<usize>,
    pub scale: f32,
    /// One value per channel.
    pub mean: Vec<f32>,
    /// One value per channel.
    pub std: Vec<f32>,
    pub fit: Fit,
    pub grey_to_rgb: bool,
    /// The data's images as H x W x C.
    pub data: [usize; 3],
}

impl InputPlan {
    /// Fills what `spec` leaves out from the model's input shape, then checks the data against
    /// the result: every mismatch is reported at once, with the keys that would fix it.
    pub fn resolve(spec: &InputSpec, model: ModelInput<'_>, data: &Dataset) -> Result<InputPlan, DataError> {
        let data_dims = [data.height, data.width, data.channels];
        check_spec_values(spec)?;
        let mismatch = |message: String| DataError::Mismatch { input: model.name.to_string(), message };
        let shape = match model.shape {
            Some(s) if s.len() == 4 => Some(s),
            Some(s) => {
                return Err(mismatch(format!(
                    "model input `{}` has shape {}; only 4-D image inputs (NCHW or NHWC) are supported",
                    model.name,
                    model_shape_string(s)
                )))
            }
            None => None,
        };
        let is_channels = |d: Option<i64>| matches!(d, Some(1 | 3));
        let layout = spec.layout.unwrap_or(match shape {
            Some(s) if !is_channels(s[1]) && is_channels(s[3]) => Layout::Nhwc,
            _ => Layout::Nchw,
        });
        let model_dim = |axis: usize| shape.and_then(|s| s[axis]).map(|d| d.max(0) as usize);
        let declared = shape.map(model_shape_string).unwrap_or_else(|| "undeclared".into());

        let model_c = model_dim(layout.channel_axis());
        if let Some(c) = model_c.filter(|c| *c != 1 && *c != 3) {
            return Err(mismatch(format!(
                "model input `{}` is {declared}; read as {layout} it has {c} channels: set input.layout to the model's layout (nchw or nhwc)",
                model.name
            )));
        }
        if let (Some(want), Some(have)) = (spec.channels, model_c) {
            if want != have {
                return Err(mismatch(format!(
                    "input.channels is {want} but model input `{}` is {declared} ({layout}: {have} channels): remove input.channels",
                    model.name
                )));
            }
        }
        let grey_to_rgb = spec.grey_to_rgb.unwrap_or(false);
        let channels = spec.channels.or(model_c).unwrap_or(if grey_to_rgb { 3 } else { data.channels });

        let (h_axis, w_axis) = layout.spatial_axes();
        let model_hw = [model_dim(h_axis), model_dim(w_axis)];
        if let Some(size) = spec.size {
            for (i, (want, have)) in size.iter().zip(model_hw).enumerate() {
                if have.is_some_and(|h| h != *want) {
                    return Err(mismatch(format!(
                        "input.size is {size:?} but model input `{}` is {declared} ({layout}), whose {} is {}: remove input.size",
                        model.name,
                        ["height", "width"][i],
                        have.unwrap_or_default()
                    )));
                }
            }
        }
        let [height, width] = spec.size.unwrap_or([model_hw[0].unwrap_or(data.height), model_hw[1].unwrap_or(data.width)]);

        let per_channel = |key: &'static str, values: &Option<Vec<f32>>, default: f32| match values.as_deref() {
            None => Ok(vec![default; channels]),
            Some([v]) => Ok(vec![*v; channels]),
            Some(v) if v.len() == channels => Ok(v.to_vec()),
            Some(v) => Err(DataError::InvalidInput {
                key,
                reason: format!("{} values for a {channels}-channel input; give 1 value or {channels}, one per channel", v.len()),
            }),
        };
        let plan = InputPlan {
            input: model.name.to_string(),
            layout,
            channels,
            height,
            width,
            batch: model_dim(0).filter(|&b| b > 0),
            scale: spec.scale.unwrap_or(1.0),
            mean: per_channel("mean", &spec.mean, 0.0)?,
            std: per_channel("std", &spec.std, 1.0)?,
            fit: spec.fit.unwrap_or_default(),
            grey_to_rgb,
            data: data_dims,
        };
        plan.check_data(&declared).map_err(mismatch)?;
        Ok(plan)
    }

    /// Whether the data's images can be turned into this input; the message lists every
    /// problem with the spec keys that fix them.
    fn check_data(&self, declared: &str) -> Result<(), String> {
        let [h, w, c] = self.data;
        // Each fix as (verb, spec key, eval's flag).
        let (mut problems, mut fixes): (Vec<&str>, Vec<(&str, &str, &str)>) = (Vec::new(), Vec::new());
        if self.grey_to_rgb && self.channels == 1 {
            problems.push("input.grey_to_rgb is set for a 1-channel model input");
            fixes.push(("remove", "input.grey_to_rgb", "without --grey-to-rgb"));
        }
        match (c, self.channels) {
            (1, 3) if !self.grey_to_rgb => fixes.push(("set", "input.grey_to_rgb: true", "--grey-to-rgb")),
            (3, 1) => problems.push("RGB images cannot feed a grey model input"),
            _ => {}
        }
        if (h, w) != (self.height, self.width) {
            let fits_inside = h <= self.height && w <= self.width;
            match self.fit {
                Fit::Exact if fits_inside => fixes.push(("set", "input.fit: pad (or resize)", "--fit pad")),
                Fit::Exact => fixes.push(("set", "input.fit: resize", "--fit resize")),
                Fit::Pad if !fits_inside => {
                    problems.push("input.fit: pad only enlarges images");
                    fixes.push(("set", "input.fit: resize", "--fit resize"));
                }
                _ => {}
            }
        }
        if problems.is_empty() && fixes.is_empty() {
            return Ok(());
        }
        let colour = |c: usize| if c == 1 { "grey" } else { "RGB" };
        let data_in_model_order = match self.layout {
            Layout::Nchw => format!("[{c}, {h}, {w}] as C, H, W"),
            Layout::Nhwc => format!("[{h}, {w}, {c}] as H, W, C"),
        };
        let mut message = format!(
            "the model expects input `{}` as {declared} ({}) but the data images are {h}x{w} {} ({data_in_model_order})",
            self.input,
            self.layout,
            colour(c)
        );
        if !problems.is_empty() {
            message += &format!("; {}", problems.join("; "));
        }
        let other_data = format!("{}x{} {} data", self.height, self.width, colour(self.channels));
        if fixes.is_empty() {
            message += &format!(": use {other_data}");
        } else {
            let flags: Vec<&str> = fixes.iter().map(|f| f.2).collect();
            message += &format!(": {} in the spec's input section (eval: {}), or use {other_data}", fix_phrase(&fixes), flags.join(" "));
        }
        Err(message)
    }

    /// The model input shape for a batch of `n` images.
    pub fn shape(&self, n: usize) -> Vec<i64> {
        let (n, c, h, w) = (n as i64, self.channels as i64, self.height as i64, self.width as i64);
        match self.layout {
            Layout::Nchw => vec![n, c, h, w],
            Layout::Nhwc => vec![n, h, w, c],
        }
    }

    /// `images` as one model input batch (shape, values) in the model's layout: fitted to the
    /// model's size, grey replicated to RGB when asked, then `(x * scale - mean) / std`.
    pub fn batch(&self, images: &[Image]) -> Result<(Vec<i64>, Vec<f32>), DataError> {
        let (hh, ww, cc) = (self.height, self.width, self.channels);
        let mut values = vec![0.0f32; images.len() * hh * ww * cc];
        for (i, image) in images.iter().enumerate() {
            let fitted = self.fit_image(image).map_err(|message| DataError::Mismatch { input: self.input.clone(), message })?;
            let out = &mut values[i * hh * ww * cc..(i + 1) * hh * ww * cc];
            for y in 0..hh {
                for x in 0..ww {
                    for c in 0..cc {
                        let src = fitted.pixels[(y * ww + x) * fitted.channels + if fitted.channels == 1 { 0 } else { c }];
                        let v = (src * self.scale - self.mean[c]) / self.std[c];
                        let at = match self.layout {
                            Layout::Nchw => (c * hh + y) * ww + x,
                            Layout::Nhwc => (y * ww + x) * cc + c,
                        };
                        out[at] = v;
                    }
                }
            }
        }
        Ok((self.shape(images.len()), values))
    }

    /// `image` at the model's size (channels unchanged), or why it cannot be.
    fn fit_image(&self, image: &Image) -> Result<Image, String> {
        let channels_ok = image.channels == self.channels || (image.channels == 1 && self.channels == 3 && self.grey_to_rgb);
        if !channels_ok || image.pixels.len() != image.height * image.width * image.channels {
            return Err(format!(
                "an image of {}x{}x{} cannot feed input `{}` ({})",
                image.height,
                image.width,
                image.channels,
                self.input,
                self.describe()
            ));
        }
        if (image.height, image.width) == (self.height, self.width) {
            return Ok(image.clone());
        }
        match self.fit {
            Fit::Pad if image.height <= self.height && image.width <= self.width => Ok(pad(image, self.height, self.width)),
            Fit::Resize if image.height > 0 && image.width > 0 => Ok(resize_bilinear(image, self.height, self.width)),
            _ => Err(format!(
                "an image of {}x{} does not fit input `{}` of {}x{} with fit {}",
                image.height, image.width, self.input, self.height, self.width, self.fit
            )),
        }
    }

    /// One line for logs: `input `x` NCHW [N, 3, 32, 32] from 28x28x1 data: pad, grey→RGB, ...`.
    pub fn describe(&self) -> String {
        let [h, w, c] = self.data;
        let mut steps = Vec::new();
        if (h, w) != (self.height, self.width) {
            steps.push(format!("{} {h}x{w}→{}x{}", self.fit, self.height, self.width));
        }
        if c == 1 && self.channels == 3 {
            steps.push("grey→RGB".into());
        }
        if self.scale != 1.0 {
            steps.push(format!("×{}", self.scale));
        }
        if self.mean.iter().any(|&m| m != 0.0) || self.std.iter().any(|&s| s != 1.0) {
            steps.push(format!("(x - {:?}) / {:?}", self.mean, self.std));
        }
        let batch = self.batch.map_or("N".to_string(), |b| b.to_string());
        let shape = match self.layout {
            Layout::Nchw => format!("[{batch}, {}, {}, {}]", self.channels, self.height, self.width),
            Layout::Nhwc => format!("[{batch}, {}, {}, {}]", self.height, self.width, self.channels),
        };
        let steps = if steps.is_empty() { "as is".to_string() } else { steps.join(", ") };
        format!("input `{}` {} {shape} from {h}x{w}x{c} images in [0, 1]: {steps}", self.input, self.layout)
    }
}

/// Values that are wrong whatever the model and data.
fn check_spec_values(spec: &InputSpec) -> Result<(), DataError> {
    let invalid = |key, reason: String| Err(DataError::InvalidInput { key, reason });
    if let Some(c) = spec.channels.filter(|c| *c != 1 && *c != 3) {
        return invalid("channels", format!("{c}; only 1 (grey) or 3 (RGB) are supported"));
    }
    if let Some(size) = spec.size.filter(|s| s.contains(&0)) {
        return invalid("size", format!("{size:?} has a zero side"));
    }
    if let Some(s) = spec.scale.filter(|s| !s.is_finite() || *s == 0.0) {
        return invalid("scale", format!("{s} must be a finite, non-zero multiplier (1 for [0, 1] inputs, 255 for 0..255)"));
    }
    if let Some(m) = spec.mean.as_ref().filter(|m| m.is_empty() || m.iter().any(|v| !v.is_finite())) {
        return invalid("mean", format!("{m:?} must be 1 or one-per-channel finite values"));
    }
    if let Some(s) = spec.std.as_ref().filter(|s| s.is_empty() || s.iter().any(|v| !v.is_finite() || *v == 0.0)) {
        return invalid("std", format!("{s:?} must be 1 or one-per-channel finite, non-zero values"));
    }
    Ok(())
}

/// `[N, 3, 32, 32]`: open dimensions print as N (batch) or ?.
fn model_shape_string(shape: &[Option<i64>]) -> String {
    let dims: Vec<String> = shape
        .iter()
        .enumerate()
        .map(|(i, d)| match d {
            Some(n) => n.to_string(),
            None if i == 0 => "N".into(),
            None => "?".into(),
        })
        .collect();
    format!("[{}]", dims.join(", "))
}

/// `image` centred on a zero canvas of `height × width` (the extra row or column, when the
/// difference is odd, goes to the bottom/right, as torchvision's `CenterCrop` padding does).
fn pad(image: &Image, height: usize, width: usize) -> Image {
    let c = image.channels;
    let (top, left) = ((height - image.height) / 2, (width - image.width) / 2);
    let mut pixels = vec![0.0; height * width * c];
    for y in 0..image.height {
        let src = &image.pixels[y * image.width * c..(y + 1) * image.width * c];
        let at = ((top + y) * width + left) * c;
        pixels[at..at + src.len()].copy_from_slice(src);
    }
    Image::new(height, width, c, pixels)
}

/// Bilinear resampling with half-pixel centres, edges clamped, no antialiasing.
fn resize_bilinear(image: &Image, height: usize, width: usize) -> Image {
    let c = image.channels;
    let axis = |out: usize, size_in: usize, size_out: usize| {
        let pos = ((out as f32 + 0.5) * size_in as f32 / size_out as f32 - 0.5).max(0.0);
        let i0 = (pos.floor() as usize).min(size_in - 1);
        let i1 = (i0 + 1).min(size_in - 1);
        (i0, i1, pos - i0 as f32)
    };
    let mut pixels = Vec::with_capacity(height * width * c);
    for y in 0..height {
        let (y0, y1, fy) = axis(y, image.height, height);
        for x in 0..width {
            let (x0, x1, fx) = axis(x, image.width, width);
            for ch in 0..c {
                let top = image.at(y0, x0, ch) * (1.0 - fx) + image.at(y0, x1, ch) * fx;
                let bottom = image.at(y1, x0, ch) * (1.0 - fx) + image.at(y1, x1, ch) * fx;
                pixels.push(top * (1.0 - fy) + bottom * fy);
            }
        }
    }
    Image::new(height, width, c, pixels)
}

/// "set a and b", "remove a and set b": consecutive fixes with the same verb share it.
fn fix_phrase(fixes: &[(&str, &str, &str)]) -> String {
    let mut phrase = String::new();
    let mut previous_verb = None;
    for &(verb, key, _) in fixes {
        match previous_verb {
            Some(v) if v == verb => phrase += &format!(" and {key}"),
            Some(_) => phrase += &format!(" and {verb} {key}"),
            None => phrase += &format!("{verb} {key}"),
        }
        previous_verb = Some(verb);
    }
    phrase
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn data(h: usize, w: usize, c: usize, n: usize) -> Dataset {
        let bytes: Vec<u8> = (0..n * h * w * c).map(|v| (v % 251) as u8).collect();
        Dataset::from_u8(Path::new("d"), [h, w, c], bytes, vec![0; n]).unwrap()
    }

    fn model<'a>(shape: &'a [Option<i64>]) -> ModelInput<'a> {
        ModelInput { name: "input", shape: Some(shape) }
    }

    const NCHW_3X32: [Option<i64>; 4] = [None, Some(3), Some(32), Some(32)];

    #[test]
    fn spec_yaml_keys_parse_and_unknown_keys_are_refused() {
        let spec: InputSpec = serde_norway::from_str(
            "layout: nhwc\nchannels: 3\nsize: [32, 32]\nscale: 255\nmean: [0.5]\nstd: [0.25, 0.5, 1]\nfit: pad\ngrey_to_rgb: true\n",
        )
        .unwrap();
        assert_eq!((spec.layout, spec.fit, spec.size, spec.grey_to_rgb), (Some(Layout::Nhwc), Some(Fit::Pad), Some([32, 32]), Some(true)));
        assert!(serde_norway::from_str::<InputSpec>("normalise: true\n").unwrap_err().to_string().contains("unknown field"));
        assert_eq!("Resize".parse::<Fit>().unwrap(), Fit::Resize);
    }

    #[test]
    fn missing_keys_come_from_the_model_and_the_data() {
        let d = data(32, 32, 3, 1);
        let plan = InputPlan::resolve(&InputSpec::default(), model(&NCHW_3X32), &d).unwrap();
        assert_eq!((plan.layout, plan.channels, plan.height, plan.width, plan.batch), (Layout::Nchw, 3, 32, 32, None));
        assert_eq!((plan.mean.clone(), plan.std.clone(), plan.scale), (vec![0.0; 3], vec![1.0; 3], 1.0));
        let nhwc = [Some(8), Some(32), Some(32), Some(3)];
        let plan = InputPlan::resolve(&InputSpec::default(), model(&nhwc), &d).unwrap();
        assert_eq!((plan.layout, plan.batch), (Layout::Nhwc, Some(8)));
        let plan = InputPlan::resolve(&InputSpec::default(), ModelInput { name: "x", shape: None }, &data(5, 6, 1, 1)).unwrap();
        assert_eq!((plan.layout, plan.channels, plan.height, plan.width), (Layout::Nchw, 1, 5, 6));
    }

    #[test]
    fn pad_28_to_32_with_grey_to_rgb_centres_and_replicates() {
        let d = data(28, 28, 1, 2);
        let spec = InputSpec { fit: Some(Fit::Pad), grey_to_rgb: Some(true), ..Default::default() };
        let plan = InputPlan::resolve(&spec, model(&NCHW_3X32), &d).unwrap();
        let (shape, values) = plan.batch(&d.images(0..2)).unwrap();
        assert_eq!(shape, vec![2, 3, 32, 32]);
        let img = d.image(1);
        for c in 0..3 {
            let plane = &values[(3 + c) * 1024..(4 + c) * 1024];
            assert_eq!(plane[0], 0.0, "corner is padding");
            assert_eq!(plane[2 * 32 + 2], img.at(0, 0, 0), "pixel (0, 0) lands at (2, 2)");
            assert_eq!(plane[29 * 32 + 29], img.at(27, 27, 0));
            assert_eq!(plane[30 * 32 + 30], 0.0);
        }
        assert!(plan.describe().contains("pad 28x28→32x32, grey→RGB"), "{}", plan.describe());
    }

    #[test]
    fn nhwc_models_get_channels_last_with_per_channel_normalisation() {
        let d = data(2, 2, 3, 1);
        let spec = InputSpec { mean: Some(vec![0.1, 0.2, 0.3]), std: Some(vec![0.5]), scale: Some(2.0), ..Default::default() };
        let plan = InputPlan::resolve(&spec, model(&[None, Some(2), Some(2), Some(3)]), &d).unwrap();
        let (shape, values) = plan.batch(&[d.image(0)]).unwrap();
        assert_eq!(shape, vec![1, 2, 2, 3]);
        let img = d.image(0);
        for (i, v) in values.iter().enumerate() {
            let c = i % 3;
            let expected = (img.pixels[i] * 2.0 - [0.1, 0.2, 0.3][c]) / 0.5;
            assert!((v - expected).abs() < 1e-6, "value {i}: {v} vs {expected}");
        }
        let nchw = InputPlan::resolve(&spec, model(&[None, Some(3), Some(2), Some(2)]), &d).unwrap();
        let (_, chw) = nchw.batch(std::slice::from_ref(&img)).unwrap();
        assert!((chw[1] - (img.at(0, 1, 0) * 2.0 - 0.1) / 0.5).abs() < 1e-6);
        assert!((chw[4] - (img.at(0, 0, 1) * 2.0 - 0.2) / 0.5).abs() < 1e-6);
    }

    #[test]
    fn resize_is_bilinear_with_half_pixel_centres() {
        let img = Image::new(1, 2, 1, vec![0.0, 1.0]);
        let up = resize_bilinear(&img, 1, 4);
        assert_eq!(up.pixels, vec![0.0, 0.25, 0.75, 1.0]);
        let down = resize_bilinear(&Image::new(2, 2, 1, vec![0.0, 1.0, 1.0, 0.0]), 1, 1);
        assert_eq!(down.pixels, vec![0.5]);
        let spec = InputSpec { fit: Some(Fit::Resize), ..Default::default() };
        let plan = InputPlan::resolve(&spec, model(&[None, Some(1), Some(4), Some(4)]), &data(8, 8, 1, 1)).unwrap();
        assert_eq!(plan.batch(&data(8, 8, 1, 1).images(0..1)).unwrap().1.len(), 16);
    }

    #[test]
    fn mismatches_name_the_input_both_shapes_and_the_fix() {
        let e = InputPlan::resolve(&InputSpec::default(), model(&NCHW_3X32), &data(28, 28, 1, 1)).unwrap_err().to_string();
        assert_eq!(
            e,
            "the model expects input `input` as [N, 3, 32, 32] (NCHW) but the data images are 28x28 grey ([1, 28, 28] as C, H, W): \
             set input.grey_to_rgb: true and input.fit: pad (or resize) in the spec's input section (eval: --grey-to-rgb --fit pad), \
             or use 32x32 RGB data"
        );
        let spec = InputSpec { fit: Some(Fit::Pad), ..Default::default() };
        let e = InputPlan::resolve(&spec, model(&[None, Some(1), Some(28), Some(28)]), &data(32, 32, 1, 1)).unwrap_err().to_string();
        assert!(e.contains("pad only enlarges images") && e.contains("set input.fit: resize"), "{e}");
        let e = InputPlan::resolve(&InputSpec::default(), model(&[None, Some(1), Some(32), Some(32)]), &data(32, 32, 3, 1))
            .unwrap_err()
            .to_string();
        assert!(e.contains("RGB images cannot feed a grey model input: use 32x32 grey data"), "{e}");
        let spec = InputSpec { grey_to_rgb: Some(true), ..Default::default() };
        let e = InputPlan::resolve(&spec, model(&[None, Some(1), Some(8), Some(8)]), &data(8, 8, 1, 1)).unwrap_err().to_string();
        assert!(e.contains("remove input.grey_to_rgb"), "{e}");
        let e = InputPlan::resolve(&spec, model(&[None, Some(1), Some(32), Some(32)]), &data(28, 28, 1, 1)).unwrap_err().to_string();
        assert!(e.contains(": remove input.grey_to_rgb and set input.fit: pad (or resize) in the spec's"), "{e}");
        let spec = InputSpec { layout: Some(Layout::Nhwc), ..Default::default() };
        let e = InputPlan::resolve(&spec, model(&NCHW_3X32), &data(32, 32, 3, 1)).unwrap_err().to_string();
        assert!(e.contains("read as NHWC it has 32 channels") && e.contains("input.layout"), "{e}");
        let spec = InputSpec { size: Some([28, 28]), ..Default::default() };
        let e = InputPlan::resolve(&spec, model(&NCHW_3X32), &data(32, 32, 3, 1)).unwrap_err().to_string();
        assert!(e.contains("input.size is [28, 28]") && e.contains("height is 32"), "{e}");
        let spec = InputSpec { channels: Some(1), ..Default::default() };
        assert!(InputPlan::resolve(&spec, model(&NCHW_3X32), &data(32, 32, 3, 1)).unwrap_err().to_string().contains("input.channels is 1"));
        let flat = [None, Some(784)];
        let e = InputPlan::resolve(&InputSpec::default(), model(&flat), &data(28, 28, 1, 1)).unwrap_err().to_string();
        assert!(e.contains("[N, 784]") && e.contains("only 4-D"), "{e}");
    }

    #[test]
    fn invalid_values_are_refused_before_resolution() {
        let d = data(32, 32, 3, 1);
        let check = |spec: InputSpec, needle: &str| {
            let e = InputPlan::resolve(&spec, model(&NCHW_3X32), &d).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        };
        check(InputSpec { mean: Some(vec![0.1, 0.2]), ..Default::default() }, "input.mean: 2 values for a 3-channel input");
        check(InputSpec { std: Some(vec![0.0]), ..Default::default() }, "input.std");
        check(InputSpec { scale: Some(f32::NAN), ..Default::default() }, "input.scale");
        check(InputSpec { channels: Some(4), ..Default::default() }, "input.channels: 4");
        check(InputSpec { size: Some([0, 32]), ..Default::default() }, "input.size");
    }

    #[test]
    fn batch_refuses_images_the_plan_cannot_fit() {
        let d = data(4, 4, 1, 1);
        let plan = InputPlan::resolve(&InputSpec::default(), model(&[None, Some(1), Some(4), Some(4)]), &d).unwrap();
        assert!(plan.batch(&[Image::new(5, 5, 1, vec![0.0; 25])]).unwrap_err().to_string().contains("with fit exact"));
        assert!(plan.batch(&[Image::new(4, 4, 3, vec![0.0; 48])]).unwrap_err().to_string().contains("4x4x3 cannot feed"));
    }
}
