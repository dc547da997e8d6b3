//! Images in and out: decoding with limits and EXIF orientation (damaged JPEGs refused
//! unless asked for), conversion to planar RGB in 0..1, Lanczos resizing, and atomic writes
//! (temporary file, then rename).

use std::io::Write;
use std::path::{Path, PathBuf};

use image::{
    DynamicImage, ImageDecoder, ImageFormat, ImageReader, Rgb32FImage, imageops::FilterType,
};

use crate::error::{Error, Result};

/// Largest number of pixels accepted from an input file by default (a decompression-bomb
/// guard): 100 megapixels.
pub const DEFAULT_MAX_INPUT_PIXELS: u64 = 100_000_000;

/// What decoding an input image accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoding {
    /// Most pixels an image may declare (a decompression-bomb guard).
    pub max_pixels: u64,
    /// Use what decodes of a damaged image (a JPEG cut short or with corrupt data, whose
    /// missing part is flat grey) instead of refusing it.
    pub accept_damaged: bool,
    /// The longest side the caller will use of the image (`u32::MAX`: all of it). A PNG
    /// too large to decode whole within [`STREAM_ABOVE_BYTES`] is reduced by a whole
    /// factor while it is decoded, row by row, down to no less than this.
    pub side_used: u32,
    /// Most bytes a decode may take: the decoder's buffer and the planar `f32` image
    /// (see [`decode_cost`]). A larger image is refused, saying this limit.
    pub max_bytes: u64,
}

impl Default for Decoding {
    fn default() -> Self {
        Self::within(DEFAULT_MAX_INPUT_PIXELS)
    }
}

impl Decoding {
    /// At most `max_pixels` (and [`Decoding::bytes_for`] them), damaged images refused,
    /// all of each image kept.
    pub fn within(max_pixels: u64) -> Self {
        Self {
            max_pixels,
            accept_damaged: false,
            side_used: u32::MAX,
            max_bytes: Self::bytes_for(max_pixels),
        }
    }

    /// The byte limit that lets an 8-bit RGB image of `max_pixels` decode whole: 3 bytes
    /// a pixel decoded and 12 converted.
    pub fn bytes_for(max_pixels: u64) -> u64 {
        max_pixels.saturating_mul(15).max(64 << 20)
    }
}

/// A PNG whose whole decode would cost more than this ([`decode_cost`]) is decoded row by
/// row and reduced on the way when it is larger than the side used.
pub const STREAM_ABOVE_BYTES: u64 = 256 << 20;

/// Bytes a whole decode of `pixels` costs: the decoder's buffer (`bytes_per_pixel` each)
/// and the planar `f32` RGB image made from it (12 each).
pub fn decode_cost(pixels: u64, bytes_per_pixel: u64) -> u64 {
    pixels.saturating_mul(bytes_per_pixel + 12)
}

/// An RGB image stored as three planes (R, G, B) of `width * height` values in 0..1.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Planar RGB values, `3 * width * height` of them.
    pub data: Vec<f32>,
}

impl Image {
    /// An image from planar RGB data.
    pub fn new(width: u32, height: u32, data: Vec<f32>) -> Self {
        assert_eq!(
            data.len(),
            3 * width as usize * height as usize,
            "planar RGB length"
        );
        Self {
            width,
            height,
            data,
        }
    }

    /// Decodes `path` (any format the `image` crate reads, chosen by content), applies its
    /// EXIF orientation and converts to RGB (grey is replicated, alpha is composited over
    /// white, 16-bit and float are kept at full precision until conversion). A damaged
    /// JPEG is refused ([`Error::DamagedImage`]); see [`Image::load_with`].
    pub fn load(path: &Path, max_pixels: u64) -> Result<Self> {
        Self::load_with(path, Decoding::within(max_pixels))
    }

    /// [`Image::load`] with the limits and leniency of `decoding`.
    pub fn load_with(path: &Path, decoding: Decoding) -> Result<Self> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        if meta.is_dir() {
            return Err(Error::ImageDecode {
                path: path.to_path_buf(),
                message: "is a directory, not an image file".into(),
            });
        }
        // A pipe would block the run forever and a device has no end: only files are read.
        if !meta.is_file() {
            return Err(Error::ImageDecode {
                path: path.to_path_buf(),
                message: "not a regular file (a device, pipe or socket); give an image file".into(),
            });
        }
        let mut head = [0u8; 64];
        let n = std::fs::File::open(path)
            .and_then(|mut f| {
                use std::io::Read;
                f.read(&mut head)
            })
            .map_err(|e| Error::io(path, e))?;
        // The JPEG decoder reads the whole file into memory anyway; so does its check.
        if image::guess_format(&head[..n]).ok() == Some(ImageFormat::Jpeg) {
            let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            return Self::decode_within(&bytes, path, decoding, u32::MAX);
        }
        let reader = ImageReader::open(path).map_err(|e| Error::io(path, e))?;
        if let Some(k) = png_reduction(&head[..n], path, decoding, u32::MAX)? {
            return png_streamed(reader.into_inner(), path, decoding, k, u32::MAX);
        }
        decode(
            reader,
            &head[..n],
            meta.len(),
            path,
            decoding,
            u32::MAX,
            None,
        )
    }

    /// Decodes an image held in memory (an upload) like [`Image::load`] decodes a file;
    /// `name` stands for it in errors and gives the format of signature-less TGA data.
    pub fn decode(bytes: &[u8], name: &Path, max_pixels: u64) -> Result<Self> {
        Self::decode_within(bytes, name, Decoding::within(max_pixels), u32::MAX)
    }

    /// [`Image::decode`], shrunk to at most `max_side` pixels on its longest side while
    /// still 8 bits a channel, before the conversion to `f32` planes (four times the
    /// memory): what a server holding many uploads needs.
    pub fn decode_within(
        bytes: &[u8],
        name: &Path,
        decoding: Decoding,
        max_side: u32,
    ) -> Result<Self> {
        let reader = ImageReader::new(std::io::Cursor::new(bytes));
        let head = &bytes[..bytes.len().min(64)];
        if let Some(k) = png_reduction(head, name, decoding, max_side)? {
            return png_streamed(reader.into_inner(), name, decoding, k, max_side);
        }
        let len = bytes.len() as u64;
        decode(reader, head, len, name, decoding, max_side, Some(bytes))
    }

    /// Converts a decoded image (alpha composited over white).
    pub fn from_dynamic(img: &DynamicImage) -> Self {
        let (width, height) = (img.width(), img.height());
        let plane = width as usize * height as usize;
        let mut data = vec![0.0f32; 3 * plane];
        // A band of rows at a time: an `f32` RGBA copy of the whole image would take 16
        // bytes a pixel beside the decoded one.
        const BAND: u32 = 64;
        for top in (0..height).step_by(BAND as usize) {
            let rows = BAND.min(height - top);
            let band = img.crop_imm(0, top, width, rows).to_rgba32f();
            let start = top as usize * width as usize;
            for (i, p) in band.pixels().enumerate() {
                let a = p[3].clamp(0.0, 1.0);
                for c in 0..3 {
                    data[c * plane + start + i] = (p[c] * a + (1.0 - a)).clamp(0.0, 1.0);
                }
            }
        }
        Self {
            width,
            height,
            data,
        }
    }

    fn to_rgb32f(&self) -> Rgb32FImage {
        let plane = self.width as usize * self.height as usize;
        Rgb32FImage::from_fn(self.width, self.height, |x, y| {
            let i = y as usize * self.width as usize + x as usize;
            image::Rgb([self.data[i], self.data[plane + i], self.data[2 * plane + i]])
        })
    }

    /// The image as interleaved RGB, each value clamped to 0..1 and given by `quantise`.
    fn interleaved<P: image::Primitive>(
        &self,
        quantise: impl Fn(f32) -> P,
    ) -> image::ImageBuffer<image::Rgb<P>, Vec<P>>
    where
        image::Rgb<P>: image::Pixel<Subpixel = P>,
    {
        let plane = self.width as usize * self.height as usize;
        image::ImageBuffer::from_fn(self.width, self.height, |x, y| {
            let i = y as usize * self.width as usize + x as usize;
            let q = |v: f32| quantise(v.clamp(0.0, 1.0));
            image::Rgb([
                q(self.data[i]),
                q(self.data[plane + i]),
                q(self.data[2 * plane + i]),
            ])
        })
    }

    /// The image as 8-bit RGB, clamped and rounded.
    pub fn to_rgb8(&self) -> image::RgbImage {
        self.interleaved(|v| (v * 255.0).round() as u8)
    }

    /// Resized to exactly `width` x `height` with a Lanczos3 filter (a copy when the size
    /// is already right).
    pub fn resized(&self, width: u32, height: u32) -> Self {
        if (width, height) == (self.width, self.height) {
            return self.clone();
        }
        let out = image::imageops::resize(&self.to_rgb32f(), width, height, FilterType::Lanczos3);
        let plane = width as usize * height as usize;
        let mut data = vec![0.0f32; 3 * plane];
        for (i, p) in out.pixels().enumerate() {
            for c in 0..3 {
                data[c * plane + i] = p[c].clamp(0.0, 1.0);
            }
        }
        Self {
            width,
            height,
            data,
        }
    }

    /// Resized so that its longest side is `longest`, keeping the aspect ratio.
    pub fn resized_to_longest(&self, longest: u32) -> Self {
        let (w, h) = fit_longest(self.width, self.height, longest);
        self.resized(w, h)
    }

    /// The image as 16-bit RGB, clamped and rounded.
    pub fn to_rgb16(&self) -> image::ImageBuffer<image::Rgb<u16>, Vec<u16>> {
        self.interleaved(|v| (v * 65535.0).round() as u16)
    }

    /// Writes the image to `path` in the format its extension names, 8 bits a channel
    /// (16 for TIFF), atomically: the data goes to a temporary file in the same directory,
    /// which is renamed over `path` only once complete.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.save_with(path, &SaveOptions::default())
    }

    /// [`Image::save`] with the bit depth, colour profile and resolution of `options`.
    pub fn save_with(&self, path: &Path, options: &SaveOptions) -> Result<()> {
        let (format, sixteen) = options.check(path)?;
        let err = |message: String| Error::ImageEncode {
            path: path.to_path_buf(),
            message,
        };
        let (w, h) = (self.width, self.height);
        let mut bytes = Vec::new();
        let mut out = std::io::Cursor::new(&mut bytes);
        let print = &options.print;
        let written = match (format, sixteen) {
            (ImageFormat::Png, false) => {
                write_png(&mut out, w, h, &self.to_rgb8(), false, print).map_err(|e| e.to_string())
            }
            (ImageFormat::Png, true) => {
                let rgb16 = self.to_rgb16();
                let be: Vec<u8> = rgb16.iter().flat_map(|v| v.to_be_bytes()).collect();
                write_png(&mut out, w, h, &be, true, print).map_err(|e| e.to_string())
            }
            (ImageFormat::Tiff, false) => {
                write_tiff::<tiff::encoder::colortype::RGB8>(&mut out, w, h, &self.to_rgb8(), print)
                    .map_err(|e| e.to_string())
            }
            (ImageFormat::Tiff, true) => write_tiff::<tiff::encoder::colortype::RGB16>(
                &mut out,
                w,
                h,
                &self.to_rgb16(),
                print,
            )
            .map_err(|e| e.to_string()),
            (ImageFormat::Jpeg, _) => {
                let mut encoder = image::codecs::jpeg::JpegEncoder::new(&mut out);
                if let Some(dpi) = print.dpi {
                    let (x, y) = dpi.rounded_u16();
                    encoder.set_pixel_density(image::codecs::jpeg::PixelDensity {
                        density: (x, y),
                        unit: image::codecs::jpeg::PixelDensityUnit::Inches,
                    });
                }
                if let Some(icc) = &print.icc {
                    use image::ImageEncoder;
                    // A profile too long for JPEG's markers is left out.
                    let _ = encoder.set_icc_profile(icc.clone());
                }
                let rgb = self.to_rgb8();
                image::ImageEncoder::write_image(
                    encoder,
                    &rgb,
                    w,
                    h,
                    image::ExtendedColorType::Rgb8,
                )
                .map_err(|e| e.to_string())
            }
            // BMP and WebP carry no profile or resolution here.
            (other, _) => self
                .to_rgb8()
                .write_to(&mut out, other)
                .map_err(|e| e.to_string()),
        };
        written.map_err(err)?;
        write_atomically(path, &bytes)
    }
}

/// Writes 8-bit RGB `data` (16-bit big-endian when `sixteen`) as PNG with `print`'s ICC
/// profile (`iCCP`) and resolution (`pHYs`, in pixels per metre).
fn write_png(
    out: &mut std::io::Cursor<&mut Vec<u8>>,
    width: u32,
    height: u32,
    data: &[u8],
    sixteen: bool,
    print: &PrintInfo,
) -> std::result::Result<(), png::EncodingError> {
    let mut info = png::Info::with_size(width, height);
    info.color_type = png::ColorType::Rgb;
    info.bit_depth = match sixteen {
        true => png::BitDepth::Sixteen,
        false => png::BitDepth::Eight,
    };
    info.icc_profile = print.icc.as_deref().map(std::borrow::Cow::Borrowed);
    info.pixel_dims = print.dpi.map(|dpi| {
        let per_metre = |v: f64| (v / METRES_PER_INCH).round() as u32;
        png::PixelDimensions {
            xppu: per_metre(dpi.x),
            yppu: per_metre(dpi.y),
            unit: png::Unit::Meter,
        }
    });
    let mut encoder = png::Encoder::with_info(out, info)?;
    // As `image` writes PNG: fast compression (a print-size result is written in seconds).
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(data)?;
    writer.finish()
}

/// Writes `data` as an uncompressed TIFF of colour type `C` with `print`'s ICC profile
/// (tag 34675) and resolution (`XResolution`, `YResolution` in pixels per inch).
fn write_tiff<C: tiff::encoder::colortype::ColorType>(
    out: &mut std::io::Cursor<&mut Vec<u8>>,
    width: u32,
    height: u32,
    data: &[C::Inner],
    print: &PrintInfo,
) -> tiff::TiffResult<()>
where
    [C::Inner]: tiff::encoder::TiffValue,
{
    use tiff::encoder::{Rational, TiffEncoder};
    let mut encoder = TiffEncoder::new(out)?;
    let mut image = encoder.new_image::<C>(width, height)?;
    if let Some(icc) = &print.icc {
        image
            .encoder()
            .write_tag(tiff::tags::Tag::IccProfile, icc.as_slice())?;
    }
    if let Some(dpi) = print.dpi {
        // Hundredths of a dot per inch.
        let rational = |v: f64| Rational {
            n: (v * 100.0).round() as u32,
            d: 100,
        };
        image.resolution_unit(tiff::tags::ResolutionUnit::Inch);
        image.x_resolution(rational(dpi.x));
        image.y_resolution(rational(dpi.y));
    }
    image.write_data(data)
}

/// Metres in an inch.
const METRES_PER_INCH: f64 = 0.0254;

/// A print resolution in dots (pixels) per inch, across and down.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dpi {
    /// Pixels per inch across.
    pub x: f64,
    /// Pixels per inch down.
    pub y: f64,
}

impl Dpi {
    /// Largest resolution written or read: the most a JPEG header holds.
    pub const MAX: f64 = 65535.0;

    /// `x` by `y` pixels per inch, when both are within 1..=[`Dpi::MAX`].
    pub fn new(x: f64, y: f64) -> Option<Self> {
        let ok = |v: f64| (1.0..=Self::MAX).contains(&v);
        (ok(x) && ok(y)).then_some(Self { x, y })
    }

    /// Rounded to whole pixels per inch, for JPEG's header.
    fn rounded_u16(self) -> (u16, u16) {
        (self.x.round() as u16, self.y.round() as u16)
    }
}

/// What a photo says about how it prints, carried to the result: its ICC colour profile and
/// its resolution.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PrintInfo {
    /// The ICC colour profile (embedded in PNG, TIFF and JPEG).
    pub icc: Option<Vec<u8>>,
    /// The resolution (written to PNG, TIFF and JPEG). The print size is the pixel count
    /// over it, so a result larger than the photo prints larger at the same sharpness.
    pub dpi: Option<Dpi>,
}

impl PrintInfo {
    /// The profile and resolution of the image file at `path`, where it has (and can be
    /// read); nothing otherwise.
    pub fn of(path: &Path) -> Self {
        Self {
            icc: icc_profile(path),
            dpi: pixel_density(path),
        }
    }
}

/// Bits per channel of a written image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum BitDepth {
    /// 16 for TIFF, 8 for the other formats.
    #[default]
    Auto,
    /// 8 bits a channel.
    #[cfg_attr(feature = "clap", value(name = "8"))]
    Eight,
    /// 16 bits a channel (PNG and TIFF): smooth gradients survive printing and editing.
    #[cfg_attr(feature = "clap", value(name = "16"))]
    Sixteen,
}

/// How an image is written.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SaveOptions {
    /// Bits per channel.
    pub depth: BitDepth,
    /// The colour profile and resolution to write, e.g. the photo's ([`PrintInfo::of`]),
    /// so that the result prints with the photo's colours and resolution.
    pub print: PrintInfo,
}

impl SaveOptions {
    /// Checks, before any work, that `path` can be written with these options; gives its
    /// format and whether it gets 16 bits a channel.
    pub fn check(&self, path: &Path) -> Result<(ImageFormat, bool)> {
        let format = output_format(path)?;
        let sixteen = match self.depth {
            BitDepth::Auto => format == ImageFormat::Tiff,
            BitDepth::Eight => false,
            BitDepth::Sixteen => true,
        };
        if sixteen && !matches!(format, ImageFormat::Png | ImageFormat::Tiff) {
            return Err(Error::ImageEncode {
                path: path.to_path_buf(),
                message: "16 bits a channel are written to .png and .tif only".into(),
            });
        }
        Ok((format, sixteen))
    }
}

/// The ICC colour profile embedded in the image file at `path`, if any (and readable).
pub fn icc_profile(path: &Path) -> Option<Vec<u8>> {
    let reader = ImageReader::open(path).ok()?.with_guessed_format().ok()?;
    if reader.format() == Some(ImageFormat::Tiff) {
        // image's TIFF decoder gives none; the tag is read directly.
        let file = std::io::BufReader::new(std::fs::File::open(path).ok()?);
        let mut tiff = tiff::decoder::Decoder::new(file).ok()?;
        return tiff.get_tag_u8_vec(tiff::tags::Tag::IccProfile).ok();
    }
    reader.into_decoder().ok()?.icc_profile().ok()?
}

/// The resolution the image file at `path` says it prints at, if it says: EXIF
/// `XResolution` and `YResolution` (JPEG, TIFF, PNG, WebP), else PNG's `pHYs` chunk or the
/// JFIF header of a JPEG. A resolution given as an aspect ratio only, or out of range, is
/// none.
pub fn pixel_density(path: &Path) -> Option<Dpi> {
    let open = || std::fs::File::open(path).ok().map(std::io::BufReader::new);
    exif_dpi(&mut open()?)
        .or_else(|| png_dpi(open()?))
        .or_else(|| {
            let mut head = [0u8; 18];
            std::io::Read::read_exact(&mut open()?, &mut head).ok()?;
            jfif_dpi(&head)
        })
}

/// The EXIF resolution of the primary image in `reader`'s container.
fn exif_dpi<R: std::io::BufRead + std::io::Seek>(reader: &mut R) -> Option<Dpi> {
    use exif::{In, Tag, Value};
    let exif = exif::Reader::new().read_from_container(reader).ok()?;
    let rational = |tag| match &exif.get_field(tag, In::PRIMARY)?.value {
        Value::Rational(v) => v.first().map(|r| r.to_f64()),
        _ => None,
    };
    // TIFF 6.0: 1 = no unit, 2 = inch (the default), 3 = centimetre.
    let unit = exif.get_field(Tag::ResolutionUnit, In::PRIMARY);
    let per_inch = match unit.and_then(|f| f.value.get_uint(0)) {
        None | Some(2) => 1.0,
        Some(3) => 2.54,
        Some(_) => return None,
    };
    let x = rational(Tag::XResolution)?;
    let y = rational(Tag::YResolution).unwrap_or(x);
    Dpi::new(x * per_inch, y * per_inch)
}

/// The `pHYs` resolution of a PNG read by `reader`, when given in pixels per metre.
fn png_dpi<R: std::io::BufRead + std::io::Seek>(reader: R) -> Option<Dpi> {
    let png = png::Decoder::new(reader).read_info().ok()?;
    let dims = png.info().pixel_dims?;
    let per_inch = |v: u32| f64::from(v) * METRES_PER_INCH;
    (dims.unit == png::Unit::Meter).then_some(())?;
    Dpi::new(per_inch(dims.xppu), per_inch(dims.yppu))
}

/// The resolution in the JFIF header of a JPEG that starts with `head` (the `APP0` segment
/// that follows the start-of-image marker: identifier, version, unit, densities).
fn jfif_dpi(head: &[u8; 18]) -> Option<Dpi> {
    let jfif = head.starts_with(&[0xFF, 0xD8, 0xFF, 0xE0]) && &head[6..11] == b"JFIF\0";
    let density = |at: usize| f64::from(u16::from_be_bytes([head[at], head[at + 1]]));
    let per_inch = match head[13] {
        1 => 1.0,
        2 => 2.54,
        _ => return None,
    };
    jfif.then_some(())?;
    Dpi::new(density(14) * per_inch, density(16) * per_inch)
}

/// Decodes the image read by `reader` (whose first bytes are `head` and length `len`; all
/// of them in `whole` when in memory, as every JPEG is), called `path` in errors.
fn decode<R: std::io::BufRead + std::io::Seek>(
    mut reader: ImageReader<R>,
    head: &[u8],
    len: u64,
    path: &Path,
    decoding: Decoding,
    max_side: u32,
    whole: Option<&[u8]>,
) -> Result<Image> {
    let max_pixels = decoding.max_pixels;
    let decode_err = |message: String| Error::ImageDecode {
        path: path.to_path_buf(),
        message,
    };
    if len == 0 {
        return Err(decode_err("the file is empty".into()));
    }
    // The format comes from the content; the extension is trusted only for formats
    // without a signature (TGA), so a misnamed file is still read and a non-image
    // named .jpg is called what it is.
    let format = match image::guess_format(head) {
        Ok(f) => f,
        Err(_) => match ImageFormat::from_path(path) {
            Ok(ImageFormat::Tga) => ImageFormat::Tga,
            _ => {
                return Err(decode_err(
                    "not a recognised image format (its first bytes match no PNG, JPEG, \
                     GIF, WebP, BMP, TIFF, ... signature)"
                        .into(),
                ));
            }
        },
    };
    reader.set_format(format);
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(decoding.max_bytes);
    reader.limits(limits);
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| decode_err(e.to_string()))?;
    let (w, h) = decoder.dimensions();
    if u64::from(w) * u64::from(h) > max_pixels {
        return Err(Error::TooManyPixels {
            path: path.to_path_buf(),
            width: w,
            height: h,
            limit: max_pixels,
        });
    }
    let pixels = u64::from(w) * u64::from(h);
    let per_pixel = u64::from(decoder.color_type().bytes_per_pixel());
    let cost = decode_cost(pixels, per_pixel);
    if cost > decoding.max_bytes {
        return Err(Error::TooLargeToDecode {
            path: path.to_path_buf(),
            width: w,
            height: h,
            bytes: cost,
            limit: decoding.max_bytes,
        });
    }
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    // The strict pass first (its pixels are dropped at once), then the lenient decode.
    let damage = match whole {
        Some(bytes) if format == ImageFormat::Jpeg && !decoding.accept_damaged => {
            strict_jpeg(bytes).err()
        }
        _ => None,
    };
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| decode_err(e.to_string()))?;
    if let Some(problem) = damage {
        return Err(Error::DamagedImage {
            path: path.to_path_buf(),
            message: damage_report(&problem, &img),
        });
    }
    img.apply_orientation(orientation);
    if img.width().max(img.height()) > max_side {
        let (w, h) = fit_longest(img.width(), img.height(), max_side);
        img = img.resize_exact(w, h, image::imageops::FilterType::Lanczos3);
    }
    let image = Image::from_dynamic(&img);
    if image.width < 2 || image.height < 2 {
        return Err(Error::ImageSize {
            path: path.to_path_buf(),
            width: image.width,
            height: image.height,
            message: "too small: at least 2x2 pixels are needed".into(),
        });
    }
    Ok(image)
}

/// The whole factor by which a PNG (its first bytes `head`, from its IHDR chunk) is to be
/// reduced while decoding, when it is one to decode row by row: not interlaced, costing
/// more than [`STREAM_ABOVE_BYTES`] whole (or more than the byte limit). `None`: decode it
/// whole. The pixel limit is checked here, before anything is allocated.
fn png_reduction(
    head: &[u8],
    path: &Path,
    decoding: Decoding,
    max_side: u32,
) -> Result<Option<u32>> {
    if head.len() < 29 || !head.starts_with(b"\x89PNG\r\n\x1a\n") || &head[12..16] != b"IHDR" {
        return Ok(None);
    }
    let be = |at: usize| u32::from_be_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
    let (width, height, depth, colour, interlaced) = (be(16), be(20), head[24], head[25], head[28]);
    let pixels = u64::from(width) * u64::from(height);
    if pixels > decoding.max_pixels {
        return Err(Error::TooManyPixels {
            path: path.to_path_buf(),
            width,
            height,
            limit: decoding.max_pixels,
        });
    }
    // Samples a pixel as the `image` crate decodes it (a palette becomes RGB or RGBA).
    let samples = match colour {
        0 => 1,
        4 => 2,
        2 => 3,
        3 => 4,
        _ => 4,
    };
    let cost = decode_cost(pixels, samples * if depth == 16 { 2 } else { 1 });
    if interlaced != 0 || (cost <= STREAM_ABOVE_BYTES && cost <= decoding.max_bytes) {
        return Ok(None);
    }
    let side = decoding.side_used.min(max_side).max(1);
    Ok(Some((width.max(height) / side).max(1)))
}

/// Decodes the PNG read by `reader` row by row, each `k` x `k` block of pixels averaged
/// into one as it comes (alpha composited over white first), so that no more than the
/// reduced image and a row are held; then its EXIF orientation, and at most `max_side`
/// pixels on its longest side (Lanczos). A reduced image larger than the byte limit is
/// refused before it is allocated.
fn png_streamed<R: std::io::BufRead + std::io::Seek>(
    reader: R,
    path: &Path,
    decoding: Decoding,
    k: u32,
    max_side: u32,
) -> Result<Image> {
    let decode_err = |e: png::DecodingError| Error::ImageDecode {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let mut decoder = png::Decoder::new_with_limits(
        reader,
        png::Limits {
            bytes: usize::try_from(decoding.max_bytes).unwrap_or(usize::MAX),
        },
    );
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut png = decoder.read_info().map_err(decode_err)?;
    let (width, height) = (png.info().width, png.info().height);
    let orientation = png
        .info()
        .exif_metadata
        .as_deref()
        .and_then(image::metadata::Orientation::from_exif_chunk);
    let (w, h) = ((width / k).max(1), (height / k).max(1));
    let plane = w as usize * h as usize;
    let cost = 12 * plane as u64;
    if cost > decoding.max_bytes {
        return Err(Error::TooLargeToDecode {
            path: path.to_path_buf(),
            width,
            height,
            bytes: cost,
            limit: decoding.max_bytes,
        });
    }
    let (colour, depth) = png.output_color_type();
    let channels = colour.samples();
    let wide = depth == png::BitDepth::Sixteen;
    let sample = |row: &[u8], i: usize| -> f32 {
        if wide {
            f32::from(u16::from_be_bytes([row[2 * i], row[2 * i + 1]])) / 65535.0
        } else {
            f32::from(row[i]) / 255.0
        }
    };
    let mut data = vec![0.0f32; 3 * plane];
    let mut sums = vec![0.0f32; 3 * w as usize];
    let share = 1.0 / (k * k) as f32;
    for y in 0..height {
        let row = png
            .next_row()
            .map_err(decode_err)?
            .ok_or_else(|| Error::ImageDecode {
                path: path.to_path_buf(),
                message: format!("the PNG ends at row {y} of {height}"),
            })?;
        let row = row.data();
        if y / k >= h {
            continue;
        }
        for x in 0..(w * k) as usize {
            let at = x * channels;
            let (rgb, a) = match channels {
                1 | 2 => (
                    [sample(row, at); 3],
                    (channels == 2).then(|| sample(row, at + 1)),
                ),
                _ => (
                    [sample(row, at), sample(row, at + 1), sample(row, at + 2)],
                    (channels == 4).then(|| sample(row, at + 3)),
                ),
            };
            let a = a.unwrap_or(1.0);
            for c in 0..3 {
                sums[c * w as usize + x / k as usize] += (rgb[c] * a + (1.0 - a)).clamp(0.0, 1.0);
            }
        }
        if (y + 1) % k == 0 {
            let out = (y / k) as usize * w as usize;
            for c in 0..3 {
                for x in 0..w as usize {
                    data[c * plane + out + x] = sums[c * w as usize + x] * share;
                }
            }
            sums.fill(0.0);
        }
    }
    let mut image = Image::new(w, h, data);
    if let Some(o) = orientation.filter(|o| *o != image::metadata::Orientation::NoTransforms) {
        let mut turned = DynamicImage::ImageRgb32F(image.to_rgb32f());
        turned.apply_orientation(o);
        image = Image::from_dynamic(&turned);
    }
    if image.width.max(image.height) > max_side {
        image = image.resized_to_longest(max_side);
    }
    Ok(image)
}

/// What is wrong with a JPEG.
enum JpegDamage {
    /// No end-of-image marker follows the image data: the file was cut short.
    EndsEarly,
    /// The data does not decode; what the decoder said.
    Corrupt(String),
}

/// Checks that a JPEG is whole: its scans end with the end-of-image marker, their restart
/// markers follow the restart interval, it decodes in strict mode (where data that does
/// not decode is an error rather than grey pixels), and its data does not run out before
/// the last block.
///
/// The last check: a decoder that meets a marker before the last block (a file cut and
/// closed with FF D9, a progressive file cut in a scan) goes on with zero bits, as
/// libjpeg does, and fills the rest with flat blocks. So the image is decoded a second
/// time with 512 one bits put before its end-of-image marker: a whole scan never reads
/// them and decodes the same, one that ran out reads them and does not.
fn strict_jpeg(bytes: &[u8]) -> std::result::Result<(), JpegDamage> {
    let end = scan_end(bytes)?;
    let decode = |bytes: &[u8], strict: bool| {
        let options = zune_core::options::DecoderOptions::default()
            .set_strict_mode(strict)
            .set_max_width(usize::MAX)
            .set_max_height(usize::MAX);
        zune_jpeg::JpegDecoder::new_with_options(
            zune_core::bytestream::ZCursor::new(bytes),
            options,
        )
        .decode()
    };
    let pixels = decode(bytes, true).map_err(|e| JpegDamage::Corrupt(format!("{e:?}")))?;
    let mut ones = Vec::with_capacity(bytes.len() + 128);
    ones.extend_from_slice(&bytes[..end]);
    // FF 00 is a stuffed FF in scan data: eight one bits.
    ones.extend(std::iter::repeat_n([0xFF, 0x00], 64).flatten());
    ones.extend_from_slice(&bytes[end..]);
    match decode(&ones, false) {
        Ok(again) if again == pixels => Ok(()),
        _ => Err(JpegDamage::EndsEarly),
    }
}

/// Where the end-of-image marker (FF D9) that ends the JPEG's scans is. The segments
/// between scans are skipped by their lengths (an EXIF thumbnail has its own markers);
/// inside scan data a literal FF is followed by 00, and the only markers allowed are the
/// restart markers RST0..RST7, in turn, and only after a restart interval (DRI) is set
/// (ITU T.81, B.1.1.5 and B.2.1). Bytes after the end do not matter.
fn scan_end(bytes: &[u8]) -> std::result::Result<usize, JpegDamage> {
    let corrupt = |what: &str| Err(JpegDamage::Corrupt(what.to_string()));
    let mut interval = 0u16;
    let mut at = 2; // after SOI
    while at + 2 <= bytes.len() {
        if bytes[at] != 0xFF {
            return corrupt("a segment does not start with a marker");
        }
        let marker = bytes[at + 1];
        match marker {
            0xFF => at += 1, // fill byte
            0xD9 => return Ok(at),
            0xD0..=0xD7 => return corrupt("a restart marker outside scan data"),
            _ => {
                let Some(length) = bytes.get(at + 2..at + 4) else {
                    break;
                };
                let length = usize::from(u16::from_be_bytes([length[0], length[1]]));
                if marker == 0xDD && length == 4 && at + 6 <= bytes.len() {
                    interval = u16::from_be_bytes([bytes[at + 4], bytes[at + 5]]);
                }
                at += 2 + length;
                if marker == 0xDA {
                    at = scan_data_end(bytes, at, interval)?;
                }
            }
        }
    }
    Err(JpegDamage::EndsEarly)
}

/// The end of the scan data starting at `at` (where its next marker is, or the file's
/// end), checking its restart markers against the restart `interval` (0: none allowed).
fn scan_data_end(
    bytes: &[u8],
    mut at: usize,
    interval: u16,
) -> std::result::Result<usize, JpegDamage> {
    let mut restarts = 0u8;
    while at + 1 < bytes.len() {
        if bytes[at] != 0xFF {
            at += 1;
            continue;
        }
        match bytes[at + 1] {
            0x00 => at += 2,
            0xFF => at += 1,
            m @ 0xD0..=0xD7 => {
                if interval == 0 {
                    return Err(JpegDamage::Corrupt(
                        "a restart marker in a scan without restart intervals".into(),
                    ));
                }
                if m != 0xD0 + restarts % 8 {
                    return Err(JpegDamage::Corrupt(format!(
                        "restart marker RST{} where RST{} belongs",
                        m - 0xD0,
                        restarts % 8
                    )));
                }
                restarts = restarts.wrapping_add(1);
                at += 2;
            }
            _ => return Ok(at),
        }
    }
    Ok(bytes.len())
}

/// What is wrong with a damaged JPEG, for its error: how much of it decoded, judged by the
/// rows at the bottom that came out as the decoder's flat grey fill.
fn damage_report(damage: &JpegDamage, decoded: &DynamicImage) -> String {
    let rgb = decoded.to_rgb8();
    let grey = |p: &image::Rgb<u8>| p.0.iter().all(|&v| v.abs_diff(128) <= 1);
    let filled = rgb
        .rows()
        .rev()
        .take_while(|row| row.clone().all(grey))
        .count();
    let height = rgb.height().max(1) as usize;
    let rows = if filled > 0 {
        format!(
            ": {}% of the rows decoded",
            100 * (height - filled) / height
        )
    } else {
        String::new()
    };
    match damage {
        JpegDamage::EndsEarly => {
            format!("the JPEG ends early{rows} (no end-of-image marker after its data)")
        }
        JpegDamage::Corrupt(said) => format!("the JPEG's data is corrupt{rows} ({said})"),
    }
}

/// The size whose longest side is `longest`, with the aspect ratio of `width` x `height`.
pub fn fit_longest(width: u32, height: u32, longest: u32) -> (u32, u32) {
    if width >= height {
        let h = (f64::from(height) * f64::from(longest) / f64::from(width))
            .round()
            .max(1.0) as u32;
        (longest, h)
    } else {
        let w = (f64::from(width) * f64::from(longest) / f64::from(height))
            .round()
            .max(1.0) as u32;
        (w, longest)
    }
}

/// The image format a path's extension names, if we write it.
pub fn output_format(path: &Path) -> Result<ImageFormat> {
    let err = |message: String| Error::ImageEncode {
        path: path.to_path_buf(),
        message,
    };
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .ok_or_else(|| err("no file extension; use .png, .jpg, .bmp, .tif or .webp".into()))?;
    let format = ImageFormat::from_extension(ext)
        .ok_or_else(|| err(format!("unknown image extension `.{ext}`")))?;
    match format {
        ImageFormat::Png
        | ImageFormat::Jpeg
        | ImageFormat::Bmp
        | ImageFormat::Tiff
        | ImageFormat::WebP => Ok(format),
        other => Err(err(format!(
            "writing {other:?} is not supported; use .png, .jpg, .bmp, .tif or .webp"
        ))),
    }
}

/// Whether new files can be created in `dir`, found by creating and removing a probe
/// file there: what a long run checks before it starts rather than at its first save.
pub fn probe_writable(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".neural-style-probe-{}", std::process::id()));
    std::fs::File::create(&probe)?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Writes `bytes` to `path` through a temporary file in the same directory, then renames it
/// into place; on failure the temporary file is removed and `path` is untouched.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomically_with(path, |f| f.write_all(bytes))
}

/// Refuses to write over `path` when it exists and is not a regular file (through links):
/// the rename of an atomic write would replace a device node, a pipe or a socket (with
/// `/dev/null` as an output, the machine's). A folder is refused likewise.
pub fn check_replaceable(path: &Path) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if !m.is_file() => Err(Error::io(
            path,
            std::io::Error::other(
                "it is not a regular file (a device, pipe, socket or folder), and it is never written over; give a file name",
            ),
        )),
        _ => Ok(()),
    }
}

/// [`write_atomically`] with the contents streamed by `write` (through a buffer), so that a
/// file larger than memory, such as a print-size checkpoint, is never held whole. A target
/// that is not a regular file is refused ([`check_replaceable`]).
pub fn write_atomically_with(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> Result<()> {
    check_replaceable(path)?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let unique = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}-{unique}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
        write(&mut f)?;
        let f = f.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A baseline JPEG of a busy 64x48 pattern, from the `image` crate's encoder.
    fn baseline_jpeg() -> Vec<u8> {
        let img = image::RgbImage::from_fn(64, 48, |x, y| {
            image::Rgb([
                (4 * x) as u8,
                (x * y * 7 % 256) as u8,
                ((x ^ y) * 4 % 256) as u8,
            ])
        });
        let mut jpeg = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut jpeg), ImageFormat::Jpeg)
            .unwrap();
        jpeg
    }

    #[test]
    fn sixteen_bit_output_and_the_colour_profile_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (w, h) = (7u32, 5u32);
        let data = (0..3 * w * h)
            .map(|i| i as f32 / (3 * w * h) as f32)
            .collect();
        let img = Image::new(w, h, data);
        let icc: Vec<u8> = (0..300).map(|i| (i * 7 % 251) as u8).collect();
        let sixteen = SaveOptions {
            depth: BitDepth::Sixteen,
            print: PrintInfo {
                icc: Some(icc.clone()),
                dpi: None,
            },
        };
        let png = dir.path().join("out.png");
        img.save_with(&png, &sixteen).unwrap();
        let back = image::open(&png).unwrap();
        assert_eq!(back.color(), image::ColorType::Rgb16);
        let back = back.to_rgb16();
        // Steps finer than 8 bits survive: value i/105 is within 1/65535.
        let v = back.get_pixel(1, 0)[0];
        assert!((f32::from(v) / 65535.0 - img.data[1]).abs() <= 1.0 / 65535.0);
        assert_eq!(icc_profile(&png), Some(icc));
        // TIFF is 16-bit unless told otherwise; other formats refuse 16 bits.
        let tif = dir.path().join("out.tif");
        img.save(&tif).unwrap();
        assert_eq!(image::open(&tif).unwrap().color(), image::ColorType::Rgb16);
        let jpg = dir.path().join("out.jpg");
        let e = img.save_with(&jpg, &sixteen).unwrap_err().to_string();
        assert!(e.contains("out.jpg") && e.contains("16 bits"), "{e}");
        // The default is unchanged: 8-bit PNG.
        img.save(&png).unwrap();
        assert_eq!(image::open(&png).unwrap().color(), image::ColorType::Rgb8);
    }

    #[test]
    fn a_photos_resolution_is_read_each_way_it_is_written() {
        let dpi = |name: &str| {
            let d = pixel_density(&neural_style_testdata::fixture(&format!("images/{name}")));
            d.map(|d| ((d.x * 100.0).round() / 100.0, (d.y * 100.0).round() / 100.0))
        };
        // EXIF wins over the JFIF header's 72 dpi; each axis is kept.
        assert_eq!(dpi("dpi-exif.jpg"), Some((350.0, 175.0)));
        assert_eq!(dpi("dpi-jfif.jpg"), Some((300.0, 300.0)));
        assert_eq!(dpi("dpi-cm.tif"), Some((254.0, 254.0)));
        // 9449 pixels per metre.
        assert_eq!(dpi("dpi.png"), Some((240.0, 240.0)));
        // PIL's JPEGs without `dpi` have a JFIF header with an aspect ratio only.
        assert_eq!(dpi("progressive.jpg"), None);
        assert_eq!(dpi("palette.png"), None);
    }

    #[test]
    fn print_output_keeps_the_resolution_and_profile_in_each_format() {
        let dir = tempfile::tempdir().unwrap();
        let img = Image::new(4, 3, (0..36).map(|i| i as f32 / 36.0).collect());
        let icc: Vec<u8> = (0..200).map(|i| (i * 11 % 251) as u8).collect();
        let print = PrintInfo {
            icc: Some(icc.clone()),
            dpi: Dpi::new(300.0, 150.0),
        };
        for (name, depth) in [
            ("o.png", BitDepth::Eight),
            ("o16.png", BitDepth::Sixteen),
            ("o.tif", BitDepth::Eight),
            ("o16.tif", BitDepth::Auto),
            ("o.jpg", BitDepth::Auto),
        ] {
            let path = dir.path().join(name);
            let print = print.clone();
            img.save_with(&path, &SaveOptions { depth, print }).unwrap();
            let back = PrintInfo::of(&path);
            assert_eq!(back.icc.as_ref(), Some(&icc), "{name}: profile");
            let d = back.dpi.unwrap_or_else(|| panic!("{name}: no resolution"));
            // PNG stores whole pixels per metre: 11811 and 5906 (within 0.02 dpi).
            assert!(
                (d.x - 300.0).abs() < 0.02 && (d.y - 150.0).abs() < 0.02,
                "{name}: {d:?}"
            );
            let back = Image::load(&path, DEFAULT_MAX_INPUT_PIXELS).unwrap();
            assert_eq!((back.width, back.height), (4, 3), "{name}");
        }
        // Without them, none is written.
        let plain = dir.path().join("plain.tif");
        img.save(&plain).unwrap();
        assert_eq!(PrintInfo::of(&plain), PrintInfo::default());
    }

    #[test]
    fn damaged_jpegs_are_refused_unless_accepted() {
        let progressive = std::fs::read(neural_style_testdata::fixture("images/progressive.jpg"));
        let progressive = progressive.unwrap();
        let name = Path::new("photo.jpg");
        let lenient = Decoding {
            accept_damaged: true,
            ..Decoding::default()
        };
        for (kind, whole) in [("baseline", baseline_jpeg()), ("progressive", progressive)] {
            assert!(Image::decode(&whole, name, 1 << 20).is_ok());
            let half = whole[..whole.len() / 2].to_vec();
            let mut zeroed = whole.clone();
            let n = zeroed.len();
            // Zeros from the middle on, the end-of-image marker with them: the decoder
            // runs out of codes. (Zeros that still read as valid codes cannot be told
            // from a picture: JPEG has no checksum.)
            zeroed[n / 2..].fill(0);
            for (how, damaged) in [("cut", half), ("zeroed", zeroed)] {
                let Err(e) = Image::decode(&damaged, name, 1 << 20) else {
                    panic!("the {how} {kind} JPEG decoded");
                };
                let message = e.to_string();
                assert!(matches!(e, Error::DamagedImage { .. }), "{message}");
                assert!(
                    message.starts_with("photo.jpg: the image is damaged: the JPEG"),
                    "{message}"
                );
                let partial = Image::decode_within(&damaged, name, lenient, u32::MAX).unwrap();
                assert_eq!((partial.width, partial.height), (64, 48));
            }
        }
    }

    /// Where the scan data of a JPEG starts (after its first SOS header).
    fn scan_start(jpeg: &[u8]) -> usize {
        let sos = jpeg.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
        sos + 2 + usize::from(u16::from_be_bytes([jpeg[sos + 2], jpeg[sos + 3]]))
    }

    /// Damage that a decoder hides (issue 43, D8): the file cut and closed with an
    /// end-of-image marker, a restart marker written into the data, restart markers out
    /// of turn. Each is refused; every whole JPEG at hand is not.
    #[test]
    fn damage_behind_a_closing_marker_or_in_restart_markers_is_found() {
        let fixture = |name: &str| {
            std::fs::read(neural_style_testdata::fixture(&format!("images/{name}"))).unwrap()
        };
        let name = Path::new("photo.jpg");
        let closed_at = |jpeg: &[u8], fraction: f64| {
            let mut cut = jpeg[..(jpeg.len() as f64 * fraction) as usize].to_vec();
            cut.extend([0xFF, 0xD9]);
            cut
        };
        let with_marker_at = |jpeg: &[u8], fraction: f64, marker: u8| {
            let start = scan_start(jpeg);
            let at = start + ((jpeg.len() - start) as f64 * fraction) as usize;
            let mut marked = jpeg.to_vec();
            marked[at..at + 2].copy_from_slice(&[0xFF, marker]);
            marked
        };
        let restarts = fixture("restarts.jpg");
        let first_rst = restarts.windows(2).position(|w| w == [0xFF, 0xD0]).unwrap();
        let mut out_of_turn = restarts.clone();
        out_of_turn[first_rst + 1] = 0xD1;
        let damaged = [
            ("baseline closed at 60%", closed_at(&baseline_jpeg(), 0.6)),
            (
                "progressive closed at 60%",
                closed_at(&fixture("progressive.jpg"), 0.6),
            ),
            ("with restarts closed at 60%", closed_at(&restarts, 0.6)),
            (
                "RST0 written at 40%",
                with_marker_at(&baseline_jpeg(), 0.4, 0xD0),
            ),
            ("restart markers out of turn", out_of_turn),
        ];
        for (how, jpeg) in damaged {
            let e = Image::decode(&jpeg, name, 1 << 20).map(|_| ()).unwrap_err();
            assert!(matches!(e, Error::DamagedImage { .. }), "{how}: {e}");
        }
        let mut whole = vec![baseline_jpeg(), restarts];
        for name in [
            "progressive.jpg",
            "cmyk.jpg",
            "dpi-exif.jpg",
            "dpi-jfif.jpg",
        ] {
            whole.push(fixture(name));
        }
        for (k, jpeg) in whole.iter().enumerate() {
            assert!(strict_jpeg(jpeg).is_ok(), "whole JPEG {k} refused");
        }
    }

    /// A `width` x `height` RGBA PNG of 16 bits a channel: the left half opaque red, the
    /// right half transparent (white once composited); deflate makes it tiny.
    fn rgba16_png(width: u32, height: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_color(png::ColorType::Rgba);
        encoder.set_depth(png::BitDepth::Sixteen);
        encoder.set_compression(png::Compression::Fastest);
        let mut writer = encoder.write_header().unwrap();
        let mut stream = writer.stream_writer().unwrap();
        let row: Vec<u8> = (0..width)
            .flat_map(|x| {
                if x < width / 2 {
                    [255, 255, 0, 0, 0, 0, 255, 255]
                } else {
                    [0; 8]
                }
            })
            .collect();
        for _ in 0..height {
            stream.write_all(&row).unwrap();
        }
        stream.finish().unwrap();
        writer.finish().unwrap();
        out
    }

    /// A decompression bomb (issue 43, D9): 5000x4000 RGBA16 costs 400 MB decoded whole.
    /// With a side used of 1000 it is reduced while decoding, within a 64 MiB limit that a
    /// whole decode could never meet; without, the limit refuses it and says so.
    #[test]
    fn a_large_png_is_reduced_while_decoding_within_the_byte_limit() {
        let bomb = rgba16_png(5000, 4000);
        let name = Path::new("bomb.png");
        let tight = Decoding {
            max_bytes: 64 << 20,
            ..Decoding::within(100_000_000)
        };
        let reduced = Decoding {
            side_used: 1000,
            ..tight
        };
        let img = Image::decode_within(&bomb, name, reduced, u32::MAX).unwrap();
        assert_eq!((img.width, img.height), (1000, 800));
        let plane = 1000 * 800;
        let at = |c: usize, x: usize, y: usize| img.data[c * plane + y * 1000 + x];
        assert_eq!(
            [at(0, 10, 10), at(1, 10, 10), at(2, 10, 10)],
            [1.0, 0.0, 0.0]
        );
        assert_eq!(
            [at(0, 990, 700), at(1, 990, 700), at(2, 990, 700)],
            [1.0; 3]
        );
        let e = Image::decode_within(&bomb, name, tight, u32::MAX).unwrap_err();
        assert!(matches!(e, Error::TooLargeToDecode { .. }), "{e}");
        let message = e.to_string();
        assert!(message.starts_with("bomb.png: image is 5000x4000: decoding it takes about 228 MB, more than the 64 MB allowed"), "{message}");
        // The server's way: at most 512 px on the longest side, reduced first.
        let served = Image::decode_within(&bomb, name, reduced, 512).unwrap();
        assert_eq!((served.width, served.height), (512, 410));
    }

    /// The conversion to planar RGB goes by bands of rows; each pixel is converted as one
    /// conversion of the whole image would.
    #[test]
    fn the_banded_conversion_matches_one_conversion_of_the_whole() {
        let img = DynamicImage::ImageRgba16(image::ImageBuffer::from_fn(7, 150, |x, y| {
            image::Rgba([
                (x * 9000) as u16,
                (y * 400) as u16,
                777,
                ((x + y) * 300) as u16,
            ])
        }));
        let banded = Image::from_dynamic(&img);
        let whole = img.to_rgba32f();
        for (i, p) in whole.pixels().enumerate() {
            let a = p[3].clamp(0.0, 1.0);
            for c in 0..3 {
                assert_eq!(
                    banded.data[c * 7 * 150 + i],
                    (p[c] * a + (1.0 - a)).clamp(0.0, 1.0)
                );
            }
        }
    }

    #[test]
    fn a_cut_jpeg_says_how_much_of_it_decoded() {
        let whole = baseline_jpeg();
        let e = Image::decode(&whole[..whole.len() / 2], Path::new("a.jpg"), 1 << 20);
        let message = e.unwrap_err().to_string();
        let percent: u32 = message
            .split("ends early: ")
            .nth(1)
            .and_then(|rest| rest.split('%').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{message}"));
        assert!((20..80).contains(&percent), "{message}");
    }

    #[test]
    fn grey_sixteen_bit_and_alpha_become_rgb() {
        let dir = tempfile::tempdir().unwrap();
        let grey = dir.path().join("grey.png");
        image::GrayImage::from_fn(4, 3, |x, _| image::Luma([(x * 60) as u8]))
            .save(&grey)
            .unwrap();
        let img = Image::load(&grey, DEFAULT_MAX_INPUT_PIXELS).unwrap();
        assert_eq!((img.width, img.height), (4, 3));
        let plane = 12;
        assert_eq!(img.data[1], img.data[plane + 1]);
        assert!((img.data[3] - 180.0 / 255.0).abs() < 1e-6);

        let deep = dir.path().join("deep.png");
        image::ImageBuffer::<image::Rgb<u16>, _>::from_fn(3, 3, |_, _| {
            image::Rgb([65535u16, 32768, 0])
        })
        .save(&deep)
        .unwrap();
        let img = Image::load(&deep, DEFAULT_MAX_INPUT_PIXELS).unwrap();
        assert!(
            (img.data[0] - 1.0).abs() < 1e-6
                && (img.data[9] - 32768.0 / 65535.0).abs() < 1e-5
                && img.data[18] == 0.0
        );

        let rgba = dir.path().join("rgba.png");
        image::RgbaImage::from_fn(2, 2, |x, _| {
            image::Rgba([0, 0, 0, if x == 0 { 0 } else { 255 }])
        })
        .save(&rgba)
        .unwrap();
        let img = Image::load(&rgba, DEFAULT_MAX_INPUT_PIXELS).unwrap();
        assert_eq!(
            img.data[0], 1.0,
            "transparent pixels are composited over white"
        );
        assert_eq!(img.data[1], 0.0, "opaque black stays black");
    }

    /// A JPEG of `img` with an EXIF APP1 segment holding `orientation`.
    fn jpeg_with_orientation(img: &image::RgbImage, orientation: u16) -> Vec<u8> {
        let mut jpeg = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut jpeg), ImageFormat::Jpeg)
            .unwrap();
        // TIFF header (big-endian), one IFD entry: Orientation (0x0112), SHORT, count 1.
        let mut tiff =
            b"MM\x00\x2a\x00\x00\x00\x08\x00\x01\x01\x12\x00\x03\x00\x00\x00\x01".to_vec();
        tiff.extend(orientation.to_be_bytes());
        tiff.extend([0, 0, 0, 0, 0, 0]);
        let mut app1 = b"Exif\x00\x00".to_vec();
        app1.extend(tiff);
        let mut out = jpeg[..2].to_vec();
        out.extend([0xff, 0xe1]);
        out.extend(((app1.len() + 2) as u16).to_be_bytes());
        out.extend(app1);
        out.extend(&jpeg[2..]);
        out
    }

    #[test]
    fn exif_orientation_is_applied() {
        let dir = tempfile::tempdir().unwrap();
        // 8x4: left half red, right half blue.
        let img = image::RgbImage::from_fn(8, 4, |x, _| {
            if x < 4 {
                image::Rgb([255, 0, 0])
            } else {
                image::Rgb([0, 0, 255])
            }
        });
        let plain = dir.path().join("plain.jpg");
        std::fs::write(&plain, jpeg_with_orientation(&img, 1)).unwrap();
        let p = Image::load(&plain, DEFAULT_MAX_INPUT_PIXELS).unwrap();
        assert_eq!((p.width, p.height), (8, 4));
        // Orientation 6: shown rotated 90° clockwise, so the red half ends up on top.
        let rotated = dir.path().join("rotated.jpg");
        std::fs::write(&rotated, jpeg_with_orientation(&img, 6)).unwrap();
        let r = Image::load(&rotated, DEFAULT_MAX_INPUT_PIXELS).unwrap();
        assert_eq!((r.width, r.height), (4, 8));
        let plane = 32;
        // Pixels (2, 1) and (2, 6) of the 4-wide result.
        let (top, bottom) = (4 + 2, 6 * 4 + 2);
        assert!(
            r.data[top] > 0.8 && r.data[2 * plane + top] < 0.2,
            "top is red"
        );
        assert!(
            r.data[bottom] < 0.2 && r.data[2 * plane + bottom] > 0.8,
            "bottom is blue"
        );
    }

    #[test]
    fn cmyk_jpeg_and_palette_png_become_rgb() {
        // Written by `python3 crates/neural-style-testdata/fixtures/images/make_images.py crates/neural-style-testdata/fixtures/images`:
        // 8x6, left half red, right half blue (transparent in the last file).
        let dir = neural_style_testdata::fixture("images");
        let at = |img: &Image, x: usize, y: usize| {
            let plane = (img.width * img.height) as usize;
            let i = y * img.width as usize + x;
            [img.data[i], img.data[plane + i], img.data[2 * plane + i]]
        };
        let close =
            |a: [f32; 3], b: [f32; 3], tol: f32| a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol);
        for (name, right, tol) in [
            ("cmyk.jpg", [0.0, 0.0, 1.0], 0.12),
            ("palette.png", [0.0, 0.0, 1.0], 0.0),
            ("palette-transparent.png", [1.0, 1.0, 1.0], 0.0),
        ] {
            let img = Image::load(&dir.join(name), DEFAULT_MAX_INPUT_PIXELS).unwrap();
            assert_eq!((img.width, img.height), (8, 6), "{name}");
            assert!(
                close(at(&img, 1, 3), [1.0, 0.0, 0.0], tol),
                "{name}: left {:?}",
                at(&img, 1, 3)
            );
            assert!(
                close(at(&img, 6, 3), right, tol),
                "{name}: right {:?}",
                at(&img, 6, 3)
            );
        }
    }

    #[test]
    fn the_format_comes_from_the_content_not_the_name() {
        let dir = tempfile::tempdir().unwrap();
        let misnamed = dir.path().join("photo.jpg");
        image::RgbImage::from_pixel(3, 2, image::Rgb([255, 0, 0]))
            .save_with_format(&misnamed, ImageFormat::Png)
            .unwrap();
        let img = Image::load(&misnamed, DEFAULT_MAX_INPUT_PIXELS).unwrap();
        assert_eq!((img.width, img.height), (3, 2));
        assert_eq!(img.data[0], 1.0);
        let text = dir.path().join("notes.png");
        std::fs::write(&text, "plain text").unwrap();
        let err = Image::load(&text, DEFAULT_MAX_INPUT_PIXELS)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("notes.png") && err.contains("not a recognised image format"),
            "{err}"
        );
    }

    #[test]
    fn an_upload_is_shrunk_before_it_becomes_floats() {
        let mut png = Vec::new();
        image::RgbImage::from_pixel(400, 100, image::Rgb([200, 100, 50]))
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let name = Path::new("upload.png");
        let small = Image::decode_within(&png, name, Decoding::within(1 << 20), 80).unwrap();
        assert_eq!((small.width, small.height), (80, 20));
        assert!(
            (small.data[0] - 200.0 / 255.0).abs() < 1e-3,
            "{}",
            small.data[0]
        );
        let whole = Image::decode_within(&png, name, Decoding::within(1 << 20), 400).unwrap();
        assert_eq!((whole.width, whole.height), (400, 100));
    }

    #[test]
    fn bytes_in_memory_decode_like_the_file_and_name_it_in_errors() {
        let dir = neural_style_testdata::fixture("images");
        for name in ["cmyk.jpg", "palette.png", "palette-transparent.png"] {
            let path = dir.join(name);
            let bytes = std::fs::read(&path).unwrap();
            let from_file = Image::load(&path, DEFAULT_MAX_INPUT_PIXELS).unwrap();
            let from_bytes =
                Image::decode(&bytes, Path::new("upload"), DEFAULT_MAX_INPUT_PIXELS).unwrap();
            assert_eq!(from_file, from_bytes, "{name}");
            let e = Image::decode(&bytes, Path::new("upload `style`"), 10)
                .unwrap_err()
                .to_string();
            assert!(e.contains("upload `style`") && e.contains("8x6"), "{e}");
        }
        for (bytes, want) in [
            (&b""[..], "empty"),
            (&b"plain text"[..], "not a recognised image format"),
        ] {
            let e = Image::decode(bytes, Path::new("content"), DEFAULT_MAX_INPUT_PIXELS)
                .unwrap_err()
                .to_string();
            assert!(e.contains("content") && e.contains(want), "{e}");
        }
    }

    #[test]
    fn limits_and_sizes_are_enforced() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.png");
        image::RgbImage::new(100, 100).save(&big).unwrap();
        let e = Image::load(&big, 5_000).unwrap_err().to_string();
        assert!(
            e.contains("big.png") && e.contains("100x100") && e.contains("5000"),
            "{e}"
        );
        let tiny = dir.path().join("tiny.png");
        image::RgbImage::new(1, 1).save(&tiny).unwrap();
        let e = Image::load(&tiny, DEFAULT_MAX_INPUT_PIXELS)
            .unwrap_err()
            .to_string();
        assert!(e.contains("tiny.png") && e.contains("too small"), "{e}");
    }

    #[test]
    fn save_is_atomic_and_checks_the_extension() {
        let dir = tempfile::tempdir().unwrap();
        let img = Image::new(2, 2, vec![0.5; 12]);
        let out = dir.path().join("out.png");
        img.save(&out).unwrap();
        assert_eq!(
            Image::load(&out, DEFAULT_MAX_INPUT_PIXELS).unwrap().width,
            2
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
        assert!(
            img.save(&dir.path().join("out.xyz"))
                .unwrap_err()
                .to_string()
                .contains("out.xyz")
        );
        assert!(img.save(&dir.path().join("missing/out.png")).is_err());
    }

    #[test]
    fn fit_longest_keeps_the_aspect_ratio() {
        assert_eq!(fit_longest(1024, 768, 256), (256, 192));
        assert_eq!(fit_longest(768, 1024, 256), (192, 256));
        assert_eq!(fit_longest(1000, 1, 100), (100, 1));
    }
}
