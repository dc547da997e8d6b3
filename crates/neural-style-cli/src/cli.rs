//! Command-line flags (clap derive). They become a checked [`crate::config::RunJob`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use neural_style::config::{self, OptimizerKind, StyleLoss};
use neural_style::{Arch, Convolution, LossForm, Padding, Pooling, Precision, PreserveColors};
#[cfg(feature = "serve")]
use neural_style_web::Limits;

/// Neural style transfer: repaint a photo in the style of a painting (Gatys et al. 2015).
#[derive(Debug, Parser)]
#[command(name = "neural-style", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// A tool other than style transfer.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Style-transfer flags (the default command).
    #[command(flatten)]
    pub run: RunArgs,
}

/// Other tools.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Time forward+backward steps through VGG with random weights (no files needed).
    Bench(BenchArgs),
    /// Known models and the weights cache: list, fetch, verify, import, convert.
    Weights(WeightsArgs),
    /// The paper's fig. 3 as one image: a labelled grid of results, one column per style
    /// weight and one row per set of style layers, all from the same photo and start.
    Sheet(Box<SheetArgs>),
    /// Every content image x every style: `--content` is a folder, a glob (quoted) or a file,
    /// `--output` a folder; finished results are skipped when run again.
    Batch(Box<BatchArgs>),
    /// Stylise a video (a file, through the system's ffmpeg) or a folder of frames, each
    /// frame starting from the previous result warped by the optical flow and held to it
    /// where the flow is reliable, so the result does not flicker.
    Video(Box<VideoArgs>),
    /// The web UI: a local server with one page to upload a photo and paintings, tune the
    /// settings, watch the painting emerge and download it; jobs wait in a queue.
    #[cfg(feature = "serve")]
    Serve(Box<ServeArgs>),
    /// A worker of the queue across machines: takes jobs that `serve --queue` accepted,
    /// runs them on this machine, saves checkpoints and results to the store. Start as
    /// many as there are machines (or GPUs); a job whose worker dies is continued by
    /// another from its last checkpoint.
    #[cfg(feature = "queue")]
    Worker(Box<WorkerArgs>),
}

#[cfg(feature = "queue")]
/// Where the queue across machines is.
#[derive(Debug, Args)]
pub struct QueueArgs {
    /// The queue's engine: a Redis URL, `redis://host:6379` (`rediss://user:password@host`
    /// for TLS; `#name` at the end keeps this queue's keys apart). The password is never
    /// printed.
    #[arg(long, value_name = "URL")]
    pub queue: Option<String>,
    /// Where uploads, checkpoints and results go, reached by the server and every worker:
    /// an S3 bucket, `s3://bucket/prefix` (credentials, region and endpoint from the
    /// `AWS_*` variables), or a shared folder (a path or `file:///path`).
    #[arg(long, value_name = "URL", requires = "queue")]
    pub store: Option<String>,
}

#[cfg(feature = "queue")]
/// Flags of `neural-style worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The engine and the store (both needed).
    #[command(flatten)]
    pub queue: QueueArgs,
    /// This worker's name, shown in the jobs it runs [default: host name and process id].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Seconds a job stays claimed by a worker that stopped answering; after that another
    /// worker continues it from its last checkpoint.
    #[arg(long, default_value_t = 30, value_name = "S")]
    pub lease: u64,
    /// L-BFGS iterations between checkpoints of a job (a dead worker's job continues
    /// from its last one)...
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub checkpoint_every: usize,
    /// ...of which one is saved to the store at most every S seconds (0: each). A
    /// checkpoint holds the optimiser's history: ~275 MB for a 384x288 job.
    #[arg(long, default_value_t = 60, value_name = "S")]
    pub checkpoint_seconds: u64,
    /// Folder for files on their way to the store [default: the system's temporary folder].
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Largest size (longest side, px) of a job (as `serve --max-size`).
    #[arg(long, default_value_t = Limits::default().max_size, value_name = "N")]
    pub max_size: u32,
    /// Most iterations of a job (as `serve --max-iterations`).
    #[arg(long, default_value_t = Limits::default().max_iterations, value_name = "N")]
    pub max_iterations: usize,
    /// The network and where it runs (every worker and the server load the same weights).
    #[command(flatten)]
    pub network: NetworkArgs,
}

#[cfg(feature = "serve")]
/// Flags of `neural-style serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on. The default answers this computer only; another
    /// address needs --token-file.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR:PORT")]
    pub bind: std::net::SocketAddr,
    /// Folder for the results (created if missing); results found there are shown again.
    #[arg(long, default_value = "neural-style-results", value_name = "DIR")]
    pub results: PathBuf,
    /// Most space the results may take; the oldest are deleted past it.
    #[arg(long, default_value = "1G", value_name = "SIZE", value_parser = parse_bytes)]
    pub max_results: u64,
    /// Jobs optimised at the same time (each uses all --threads).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub jobs: usize,
    /// Most jobs waiting in the queue; more are refused (503) until one finishes.
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub max_queue: usize,
    /// With --queue: how long a finished or cancelled job is kept (its view, preview,
    /// idempotency key and result) before Redis and the store forget it, such as 7days,
    /// 12h or 90s; 0 keeps them for ever.
    #[cfg(feature = "queue")]
    #[arg(long, default_value = "7days", value_name = "TIME", value_parser = humantime::parse_duration)]
    pub retention: std::time::Duration,
    /// Largest upload (the photo and paintings of one job together); larger ones get 413.
    #[arg(long, default_value = "50M", value_name = "SIZE", value_parser = parse_bytes)]
    pub max_upload: u64,
    /// Largest size (longest side, px) a job may ask for.
    #[arg(long, default_value_t = Limits::default().max_size, value_name = "N")]
    pub max_size: u32,
    /// Most iterations a job may ask for.
    #[arg(long, default_value_t = Limits::default().max_iterations, value_name = "N")]
    pub max_iterations: usize,
    /// Seconds a request may take (uploads included; live event streams excepted).
    #[arg(long, default_value_t = 60, value_name = "S")]
    pub request_timeout: u64,
    /// A host name the server answers to besides IP addresses and `localhost` (repeat for
    /// more): requests naming any other host are refused, so that a page on a rebound
    /// domain cannot reach the server.
    #[arg(long = "allow-host", value_name = "NAME")]
    pub allow_hosts: Vec<String>,
    /// Jobs go to the queue across machines instead of running here: `neural-style worker`
    /// processes anywhere run them (--jobs and --results are then unused).
    #[cfg(feature = "queue")]
    #[command(flatten)]
    pub queue: QueueArgs,
    /// Most jobs one client may have waiting: per access token with --token-file, else per
    /// browser (0: only --max-queue).
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub max_per_client: usize,
    /// API access tokens, lines of `NAME TOKEN` (16-128 letters, digits, - or _): every API
    /// request must carry one (`Authorization: Bearer TOKEN`, or typed once on the page).
    /// Required when --bind is not a loopback address.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// The network and where it runs (uploads above --max-input-pixels get 413).
    #[command(flatten)]
    pub network: NetworkArgs,
}

/// Flags of `neural-style video`.
#[derive(Debug, Args)]
pub struct VideoArgs {
    /// Stylise every frame on its own (no flow, no temporal term): the flickering baseline.
    #[arg(long)]
    pub no_temporal: bool,
    /// Weight of the temporal term: how strongly a frame keeps to the previous result
    /// where the flow is reliable.
    #[arg(long, default_value_t = config::DEFAULT_TEMPORAL_WEIGHT, value_name = "W")]
    pub temporal_weight: f32,
    /// L-BFGS evaluations for every frame after the first, which starts from the warped
    /// previous result at full size [default: --iterations].
    #[arg(long, value_name = "N")]
    pub frame_iterations: Option<usize>,
    /// Frame rate of an encoded output [default: the input video's, or 25 for frames].
    #[arg(long, value_name = "FPS")]
    pub fps: Option<f32>,
    /// The style-transfer flags; `-c` is a video file or a folder of frames (taken in name
    /// order), `-o` a video file (.mp4, .mkv, .webm, .mov, .avi; its frames are kept in
    /// `OUTPUT.frames/`) or a folder for the frames.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Flags of `neural-style batch`: the style-transfer flags, with `--content` naming many
/// photos and `--output` a folder.
#[derive(Debug, Args)]
pub struct BatchArgs {
    /// The style-transfer flags; `-c` is a folder, a quoted glob like 'photos/*.jpg' or a
    /// file, `-o` the folder for the results (created if missing), named
    /// `CONTENT__STYLE.png`.
    #[command(flatten)]
    pub run: RunArgs,
    /// Every pair becomes a job of the queue across machines, run by `neural-style worker`s;
    /// the batch waits and writes the results as they come.
    #[cfg(feature = "queue")]
    #[command(flatten)]
    pub queue: QueueArgs,
    /// With --queue: return once the jobs are queued; the same command run again later
    /// finds them (and waits for those not finished) instead of queueing them again.
    #[cfg(feature = "queue")]
    #[arg(long, requires = "queue")]
    pub detach: bool,
}

/// Flags of `neural-style sheet`: the style-transfer flags plus the grid's axes.
#[derive(Debug, Args)]
pub struct SheetArgs {
    /// Style weights, one column each, comma-separated (e.g. 1,10,100,1000).
    #[arg(long, value_delimiter = ',', value_name = "W,...", required = true)]
    pub style_weights: Vec<f32>,
    /// Sets of style layers, one row each, separated by `;` (e.g.
    /// "relu1_1;relu1_1,relu2_1;relu1_1,relu2_1,relu3_1") [default: one row, --style-layers].
    #[arg(long, value_delimiter = ';', value_name = "L,...;L,...")]
    pub layer_sets: Vec<String>,
    /// The style-transfer flags; --output names the sheet.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Flags of `neural-style weights`.
#[derive(Debug, Args)]
pub struct WeightsArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: WeightsAction,
    /// Cache directory [default: $NEURAL_STYLE_CACHE, else the platform cache directory's
    /// `neural-style` folder].
    #[arg(long, global = true, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

/// `neural-style weights` actions.
#[derive(Debug, Subcommand)]
pub enum WeightsAction {
    /// The known models and what the cache holds of each (with sizes).
    List,
    /// Download (and convert) models ahead of time.
    Fetch {
        /// Model names (see `weights list`).
        #[arg(required = true)]
        models: Vec<String>,
    },
    /// Re-check the SHA-256 of cached models (all cached ones when none are named); a file
    /// that fails is removed so the next run downloads it again.
    Verify {
        /// Model names.
        models: Vec<String>,
    },
    /// Adopt a file downloaded by hand: check its SHA-256 and copy it into the cache.
    Import {
        /// The downloaded file.
        file: PathBuf,
        /// The model it is.
        #[arg(long, short)]
        model: String,
    },
    /// Convert a .pth (or .safetensors) to a conv-only .safetensors that loads fast.
    Convert {
        /// The weights file to read.
        input: PathBuf,
        /// The .safetensors to write.
        output: PathBuf,
        /// Network architecture [default: from the file].
        #[arg(long, value_enum)]
        arch: Option<Arch>,
        /// Input convention to record in the output [default: the file's, if any].
        #[arg(long, value_enum)]
        preprocess: Option<PreprocessArg>,
    },
}

/// Flags of `neural-style bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Image side in pixels (square).
    #[arg(long, default_value_t = 256)]
    pub size: u32,
    /// Timed steps (after one warm-up step).
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    /// Network.
    #[arg(long, value_enum, default_value_t = Arch::Vgg19)]
    pub arch: Arch,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Where to compute: auto, cpu or gpu (see the main command's --device).
    #[arg(long, default_value = "auto", value_name = "auto|cpu|gpu")]
    pub device: String,
    /// Convolution padding (`zero` is what the PyTorch reference benchmark uses; a run's
    /// default is `reflect`).
    #[arg(long, value_enum, default_value_t = Padding::Zero)]
    pub padding: Padding,
    /// How the CPU computes the convolutions (see the main command's --convolution).
    #[arg(long, value_enum, default_value_t)]
    pub convolution: Convolution,
    /// The number format of the Winograd products (see the main command's --precision).
    #[arg(long, value_enum, default_value_t)]
    pub precision: Precision,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Input conventions.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PreprocessArg {
    /// RGB in 0..1 normalised with the ImageNet mean and std (torchvision models).
    #[value(name = "torch-rgb-01")]
    TorchRgb01,
    /// BGR in 0..255 minus the mean pixel (Caffe models, neural-style-pt's VGG).
    #[value(name = "caffe-bgr-255")]
    CaffeBgr255,
}

impl From<PreprocessArg> for neural_style::InputConvention {
    fn from(p: PreprocessArg) -> Self {
        match p {
            PreprocessArg::TorchRgb01 => neural_style::InputConvention::TorchRgb01,
            PreprocessArg::CaffeBgr255 => neural_style::InputConvention::CAFFE,
        }
    }
}

/// Flags of the style-transfer command.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Content photo. Leave out for texture synthesis (style reconstruction from noise).
    #[arg(short, long, value_name = "PATH")]
    pub content: Option<PathBuf>,
    /// Style image; repeat for several styles. Leave out for content reconstruction.
    #[arg(short, long, value_name = "PATH")]
    pub style: Vec<PathBuf>,
    /// Output image; the format follows the extension (.png, .jpg, .bmp, .tif, .webp).
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// The network and where it runs.
    #[command(flatten)]
    pub network: NetworkArgs,
    /// Content layers, comma-separated [default: relu2_2,relu4_2, or the deepest rectifier the
    /// weights have].
    #[arg(long, value_delimiter = ',', value_name = "L,...")]
    pub content_layers: Option<Vec<String>>,
    /// Style layers, comma-separated [default: relu1_1,relu2_1,relu3_1,relu4_1,relu5_1, those
    /// the weights have].
    #[arg(long, value_delimiter = ',', value_name = "L,...")]
    pub style_layers: Option<Vec<String>>,
    /// Weight of each style layer, comma-separated [default: 1/L (normalized, paper), 1 each
    /// (mean)].
    #[arg(long, value_delimiter = ',', value_name = "W,...")]
    pub style_layer_weights: Option<Vec<f32>>,
    /// Content weight α [default: 1; --loss-form mean: 5 for Caffe weights, 1 for torchvision;
    /// paper: 1].
    #[arg(long, allow_negative_numbers = true)]
    pub content_weight: Option<f32>,
    /// Style weight β [default: 25 with the default content layers (one before relu4_1,
    /// one after), 10 when they are all at relu4_1 or deeper, 300 when they are all before
    /// it (networks that stop early); --loss-form mean: 100 for Caffe weights, 1e6 for
    /// torchvision; paper: 1e3].
    #[arg(long, allow_negative_numbers = true)]
    pub style_weight: Option<f32>,
    /// Total-variation weight [default: 0; --loss-form mean: 1e-3 for Caffe weights].
    #[arg(long, allow_negative_numbers = true)]
    pub tv_weight: Option<f32>,
    /// How the loss terms are normalised.
    #[arg(long, value_enum, default_value_t)]
    pub loss_form: LossForm,
    /// Optimiser.
    #[arg(long, value_enum, default_value_t)]
    pub optimizer: OptimizerKind,
    /// Loss evaluations (L-BFGS) or steps (Adam).
    #[arg(short = 'n', long, default_value_t = config::DEFAULT_ITERATIONS)]
    pub iterations: usize,
    /// L-BFGS history size.
    #[arg(long, default_value_t = config::DEFAULT_LBFGS_HISTORY)]
    pub lbfgs_history: usize,
    /// Use a strong-Wolfe line search in L-BFGS.
    #[arg(long)]
    pub line_search: bool,
    /// Turn off L-BFGS's divergence guard (a single-size run is then PyTorch's LBFGS on any
    /// well-scaled problem).
    #[arg(long)]
    pub no_safeguard: bool,
    /// Adam step size, in 0..255 pixel units.
    #[arg(long, default_value_t = config::DEFAULT_LEARNING_RATE, allow_negative_numbers = true)]
    pub learning_rate: f32,
    /// Initial image: `content`, `noise`, or an image file.
    #[arg(long, default_value = "content", value_name = "content|noise|PATH")]
    pub init: String,
    /// Random seed (noise initialisation).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Pooling between blocks.
    #[arg(long, value_enum, default_value_t)]
    pub pooling: Pooling,
    /// Convolution padding at the image border.
    #[arg(long, value_enum, default_value_t)]
    pub padding: Padding,
    /// How the CPU computes the 3x3 convolutions: `winograd` (Winograd F(4x4, 3x3): a quarter
    /// of the multiplications; results differ from `direct` by rounding, about 1e-6
    /// relative) or `direct` (burn's own convolution). GPUs always use their own.
    #[arg(long, value_enum, default_value_t)]
    pub convolution: Convolution,
    /// The number format of the Winograd convolution's products on the CPU: `auto` (bf16
    /// where the CPU has AVX512-BF16, f32 elsewhere), `f32`, or `bf16` (8 significant bits
    /// per operand, f32 sums; refused on CPUs without AVX512-BF16). bf16 runs about 1.4x
    /// faster, with features about 1% off and a final loss under 1% higher than f32's; `f32`
    /// gives the same numbers on every CPU.
    #[arg(long, value_enum, default_value_t)]
    pub precision: Precision,
    /// Output size: the longest side (e.g. 512) or WxH (e.g. 640x480).
    #[arg(long, default_value_t = config::DEFAULT_SIZE.to_string(), value_name = "N|WxH")]
    pub size: String,
    /// Optimise at the output size only (no coarse-to-fine schedule).
    #[arg(long, visible_alias = "no-multiscale", conflicts_with = "stage_sides")]
    pub no_coarse_to_fine: bool,
    /// Longest side of the first, coarsest size; sizes grow by √2 up to --size.
    #[arg(long, default_value_t = config::DEFAULT_MIN_SIZE, value_name = "N")]
    pub min_size: u32,
    /// Longest sides of the sizes before the final one, comma-separated and increasing
    /// (e.g. 256,384); replaces the √2 schedule from --min-size.
    #[arg(
        long,
        visible_alias = "scales",
        value_delimiter = ',',
        value_name = "N,..."
    )]
    pub stage_sides: Option<Vec<u32>>,
    /// Evaluate the objective in tiles of about N pixels a side (each read with a halo as
    /// wide as the deepest layer sees, so the result is the whole-image one): memory then
    /// follows the tile, not the picture [default: tiles only when the whole image would
    /// not fit in memory].
    #[arg(long, value_name = "N", conflicts_with = "no_tile")]
    pub tile: Option<u32>,
    /// Never evaluate by tiles: a picture that does not fit is refused (or its L-BFGS
    /// history shortened) instead.
    #[arg(long)]
    pub no_tile: bool,
    /// Bits per channel of the output: `auto` (16 for .tif, 8 otherwise), `8`, or `16`
    /// (.png and .tif: smooth gradients survive printing and editing). The photo's colour
    /// profile (ICC) is embedded in PNG, TIFF and JPEG outputs either way.
    #[arg(long, value_enum, default_value_t, value_name = "auto|8|16")]
    pub bit_depth: neural_style::BitDepth,
    /// Print resolution written to the output (PNG, TIFF, JPEG), in pixels per inch; the
    /// print size is the pixel count over it. By default the photo's, where it has one.
    #[arg(long, value_name = "N", value_parser = parse_dpi)]
    pub dpi: Option<neural_style::Dpi>,
    /// Keep the photo's colours: `luminance` (the result's brightness with the photo's
    /// chroma) or `histogram` (style images recoloured to the photo's colour statistics).
    #[arg(long, value_enum, value_name = "MODE")]
    pub preserve_colors: Option<PreserveColors>,
    /// Style image size relative to the output size.
    #[arg(long, default_value_t = config::DEFAULT_STYLE_SCALE, allow_negative_numbers = true)]
    pub style_scale: f32,
    /// Weights of the style images, comma-separated (normalised to sum to 1).
    #[arg(long, value_delimiter = ',', value_name = "W,...")]
    pub style_blend: Option<Vec<f32>>,
    /// How style statistics are compared.
    #[arg(long, value_enum, default_value_t)]
    pub style_loss: StyleLoss,
    /// Region of each style (Gatys et al. 2017): a grey-level image with the content's
    /// aspect ratio, white where that style goes; give one per --style, in the same order.
    #[arg(long, value_name = "PATH")]
    pub mask: Vec<PathBuf>,
    /// Weights the content term per position (scaled to mean 1, so the overall content
    /// weight stays): bright regions stay closer to the photo, black ones go to the style.
    #[arg(long, value_name = "PATH")]
    pub content_mask: Option<PathBuf>,
    /// Print the losses every N evaluations (0: never).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub print_every: usize,
    /// Save an intermediate image every N evaluations, as OUTPUT_NNNN.EXT (0: never).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub save_every: usize,
    /// Save the run's whole state to FILE every --checkpoint-every iterations (atomically);
    /// `--resume FILE` continues from it exactly.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
    /// L-BFGS iterations between checkpoints.
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub checkpoint_every: usize,
    /// Continue a run from its checkpoint (give the same images and flags); checkpoints
    /// keep going to the same file unless --checkpoint names another.
    #[arg(long, value_name = "FILE")]
    pub resume: Option<PathBuf>,
    /// Write one JSON line per evaluation (evaluation, total, content, style, tv, seconds).
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Plan for at most this much memory (e.g. 6G, 800M) [default: 90% of what is free].
    #[arg(long, value_name = "SIZE", value_parser = parse_bytes)]
    pub max_memory: Option<u64>,
    /// Skip the memory check (by default a run that would not fit in the free memory is
    /// refused, or its L-BFGS history shortened, before it starts).
    #[arg(long)]
    pub no_memory_check: bool,
    /// Do not show the progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Flags that choose the network and where it runs (the main command and `serve`).
#[derive(Debug, Clone, Args)]
pub struct NetworkArgs {
    /// Weights file: .safetensors or PyTorch .pth, torchvision (`features.N.weight`) or named
    /// (`conv1_1.weight`) keys. Without it, --model is downloaded (once) and used.
    #[arg(short, long, value_name = "PATH")]
    pub weights: Option<PathBuf>,
    /// A known model, downloaded to the cache on first use: vgg19, vgg16, vgg19-caffe.
    #[arg(long, short = 'm', default_value = neural_style_models::DEFAULT_MODEL, conflicts_with = "weights")]
    pub model: String,
    /// Cache directory for downloaded models [default: $NEURAL_STYLE_CACHE, else the
    /// platform cache directory's `neural-style` folder].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Network architecture [default: from the file's metadata or keys].
    #[arg(long, value_enum)]
    pub arch: Option<Arch>,
    /// Input convention of the weights [default: from the file's metadata, else torch-rgb-01].
    #[arg(long, value_enum)]
    pub preprocess: Option<PreprocessArg>,
    /// Where to compute: `auto` (a GPU if this build has a GPU backend and one answers, else
    /// the CPU), `cpu`, or `gpu` (builds with `--features wgpu` or `--features cuda`).
    #[arg(long, default_value = "auto", value_name = "auto|cpu|gpu")]
    pub device: String,
    /// Worker threads (default: all cores). Same inputs, seed and threads give identical output.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Refuse input images with more pixels than this (decompression-bomb guard).
    #[arg(long, default_value_t = neural_style::DEFAULT_MAX_INPUT_PIXELS, value_name = "N")]
    pub max_input_pixels: u64,
    /// Use damaged input images (a JPEG cut short or with broken data) for the part that
    /// decodes, the rest flat grey, instead of refusing them.
    #[arg(long)]
    pub accept_damaged: bool,
}

/// A resolution in pixels per inch, the same across and down.
fn parse_dpi(s: &str) -> Result<neural_style::Dpi, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of pixels per inch (e.g. 300)"))?;
    neural_style::Dpi::new(v, v)
        .ok_or_else(|| format!("{s} is out of range; use 1 to {}", neural_style::Dpi::MAX))
}

/// `800M`, `6G`, `1.5G` or a plain number of bytes.
fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (number, unit) = match t.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => (&t[..i], t[i..].to_ascii_uppercase()),
        None => (t, String::new()),
    };
    let unit_bytes: u64 = match unit.trim_end_matches(['B', 'I']) {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return Err(format!("`{s}`: use a size like 800M or 6G")),
    };
    let n: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{s}`: use a size like 800M or 6G"))?;
    if !(n.is_finite() && n > 0.0) {
        return Err(format!("`{s}`: the size must be positive"));
    }
    Ok((n * unit_bytes as f64) as u64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(super::parse_bytes("800M"), Ok(800 << 20));
        assert_eq!(super::parse_bytes("1.5G"), Ok(3 << 29));
        assert_eq!(super::parse_bytes("2gib"), Ok(2 << 30));
        assert_eq!(super::parse_bytes("4096"), Ok(4096));
        assert!(super::parse_bytes("lots").is_err());
        assert!(super::parse_bytes("-1G").is_err());
    }
}
