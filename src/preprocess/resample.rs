//! Pillow's resampling of 8-bit images (`libImaging/Resample.c`), bit for bit: separable
//! convolution, the horizontal pass first, each output pixel's weights from the filter over the
//! support widened by the scale when downscaling, normalised, turned into fixed point with 22
//! fractional bits, and each pass rounded and clamped to 8 bits. Hand-written because the
//! transformers Pillow backend is defined by exactly this arithmetic (`fast_image_resize` and
//! `image` round differently).

/// The filters transformers' processors name (PIL's `Resampling` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// `Resampling.BILINEAR` (2): the triangle filter, support 1.
    Bilinear,
    /// `Resampling.BICUBIC` (3): Keys cubic with a = −0.5, support 2.
    Bicubic,
    /// `Resampling.LANCZOS` (1): Lanczos-3.
    Lanczos,
}

impl Filter {
    /// From PIL's integer code as `preprocessor_config.json` stores it.
    pub fn from_pil(code: u64) -> Option<Self> {
        match code {
            1 => Some(Filter::Lanczos),
            2 => Some(Filter::Bilinear),
            3 => Some(Filter::Bicubic),
            _ => None,
        }
    }

    fn support(self) -> f64 {
        match self {
            Filter::Bilinear => 1.0,
            Filter::Bicubic => 2.0,
            Filter::Lanczos => 3.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        match self {
            Filter::Bilinear => {
                let x = x.abs();
                if x < 1.0 { 1.0 - x } else { 0.0 }
            }
            Filter::Bicubic => {
                let (a, x) = (-0.5, x.abs());
                if x < 1.0 {
                    ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * a
                } else {
                    0.0
                }
            }
            Filter::Lanczos => {
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let x = x * std::f64::consts::PI;
        x.sin() / x
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Each output pixel's first input pixel and its fixed-point weights (`precompute_coeffs`
/// then `normalize_coeffs_8bpc`).
struct Coefficients {
    first: Vec<usize>,
    weights: Vec<Vec<i32>>,
}

fn coefficients(input: usize, output: usize, filter: Filter) -> Coefficients {
    let scale = input as f64 / output as f64;
    let filter_scale = scale.max(1.0);
    let support = filter.support() * filter_scale;
    let (mut first, mut weights) = (Vec::with_capacity(output), Vec::with_capacity(output));
    for xx in 0..output {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filter_scale;
        // C's (int) truncates toward zero.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(input as i64) as usize;
        let k: Vec<f64> = (xmin..xmax).map(|x| filter.weight((x as f64 - center + 0.5) * ss)).collect();
        let total: f64 = k.iter().sum();
        let fixed = k
            .iter()
            .map(|&w| {
                let w = if total != 0.0 { w / total } else { w };
                let scaled = w * f64::from(1u32 << PRECISION_BITS);
                (if w < 0.0 { -0.5 + scaled } else { 0.5 + scaled }) as i32
            })
            .collect();
        first.push(xmin);
        weights.push(fixed);
    }
    Coefficients { first, weights }
}

fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// An 8-bit RGB image, row-major, 3 bytes per pixel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rgb8 {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `height · width · 3` bytes.
    pub data: Vec<u8>,
}

impl Rgb8 {
    /// `PIL.Image.resize((width, height), filter)`: a copy when the size is unchanged.
    pub fn resize(&self, width: usize, height: usize, filter: Filter) -> Rgb8 {
        let mut image = self.clone();
        if width != image.width {
            image = image.horizontal(width, filter);
        }
        if height != image.height {
            image = image.vertical(height, filter);
        }
        image
    }

    fn horizontal(&self, width: usize, filter: Filter) -> Rgb8 {
        let c = coefficients(self.width, width, filter);
        let mut data = Vec::with_capacity(self.height * width * 3);
        for row in self.data.chunks(self.width * 3) {
            for (x0, k) in c.first.iter().zip(&c.weights) {
                for ch in 0..3 {
                    let mut acc = 1i64 << (PRECISION_BITS - 1);
                    for (i, &w) in k.iter().enumerate() {
                        acc += i64::from(row[(x0 + i) * 3 + ch]) * i64::from(w);
                    }
                    data.push(clip8(acc));
                }
            }
        }
        Rgb8 { width, height: self.height, data }
    }

    fn vertical(&self, height: usize, filter: Filter) -> Rgb8 {
        let c = coefficients(self.height, height, filter);
        let stride = self.width * 3;
        let mut data = Vec::with_capacity(height * stride);
        for (y0, k) in c.first.iter().zip(&c.weights) {
            for i in 0..stride {
                let mut acc = 1i64 << (PRECISION_BITS - 1);
                for (j, &w) in k.iter().enumerate() {
                    acc += i64::from(self.data[(y0 + j) * stride + i]) * i64::from(w);
                }
                data.push(clip8(acc));
            }
        }
        Rgb8 { width: self.width, height, data }
    }

    /// The `width × height` window at (`left`, `top`) (inside the image).
    pub fn crop(&self, left: usize, top: usize, width: usize, height: usize) -> Rgb8 {
        let mut data = Vec::with_capacity(width * height * 3);
        for y in top..top + height {
            data.extend_from_slice(&self.data[(y * self.width + left) * 3..(y * self.width + left + width) * 3]);
        }
        Rgb8 { width, height, data }
    }

    /// The image on a black `width × height` canvas at (`left`, `top`) (Pillow's paste onto
    /// `Image.new("RGB", size, 0)`).
    pub fn pad(&self, width: usize, height: usize, left: usize, top: usize) -> Rgb8 {
        let mut data = vec![0u8; width * height * 3];
        for (y, row) in self.data.chunks(self.width * 3).enumerate() {
            let start = ((top + y) * width + left) * 3;
            data[start..start + row.len()].copy_from_slice(row);
        }
        Rgb8 { width, height, data }
    }
}
