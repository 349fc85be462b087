//! One image as the corruptions and the input pipeline see it: height × width × channels (HWC,
//! channels last, as image files and CIFAR-10-C store them), values in [0, 1].

/// An HWC image with values in [0, 1] (pixel bytes divided by 255).
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub height: usize,
    pub width: usize,
    /// 1 (grey) or 3 (RGB).
    pub channels: usize,
    /// `height * width * channels` values, row-major HWC.
    pub pixels: Vec<f32>,
}

impl Image {
    pub fn new(height: usize, width: usize, channels: usize, pixels: Vec<f32>) -> Self {
        debug_assert_eq!(pixels.len(), height * width * channels);
        Image { height, width, channels, pixels }
    }

    pub fn from_u8(height: usize, width: usize, channels: usize, bytes: &[u8]) -> Self {
        Image::new(height, width, channels, bytes.iter().map(|&b| f32::from(b) / 255.0).collect())
    }

    /// Bytes as CIFAR-10-C stores corrupted images: `np.uint8(x * 255)` after clipping to
    /// [0, 255], i.e. truncation, not rounding.
    pub fn to_u8(&self) -> Vec<u8> {
        self.pixels.iter().map(|&v| (v.clamp(0.0, 1.0) * 255.0) as u8).collect()
    }

    pub fn at(&self, y: usize, x: usize, c: usize) -> f32 {
        self.pixels[(y * self.width + x) * self.channels + c]
    }
}
