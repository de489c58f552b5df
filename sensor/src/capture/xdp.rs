//! Loading and attaching the embedded XDP program, and owning its maps.
//!
//! Attachments are BPF links: when the process exits, even by `kill -9`, the kernel detaches the
//! program. Integration tests and benchmarks call [`load`] exactly as the agent does.

use std::os::fd::AsFd as _;

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, LpmTrie, MapData, PerCpuArray, RingBuf, lpm_trie::Key},
    programs::{ProgramError, Xdp, XdpMode as AyaXdpMode, xdp::XdpLinkId},
};
use sensor_common::{
    ALLOWLIST_MAP, COUNTERS_MAP, DEDUP_MAP, PROGRAM_NAME, RECORDS_MAP, SETTINGS_MAP,
    SOURCE_BUDGET_MAP, Settings,
};

use super::{
    aggregate::Aggregator,
    counters::CounterSnapshot,
    sizing::{MapPlan, MapRequest, SizingError, plan},
};
use crate::{capture::XdpMode, net::Cidr, net::SourcePrefix};

/// The XDP object built by `build.rs`, embedded so the binary needs no other file.
static PROGRAM: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sensor"));

/// Benchmark-only programs built alongside the sensor program (feature `bench-programs`).
#[cfg(feature = "bench-programs")]
pub mod bench_programs {
    /// The empty XDP program (`XDP_PASS`), the baseline for kernel cost.
    pub static PASS: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/pass"));
    /// The live-frames traffic generator.
    pub static TRAFGEN: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/trafgen"));
}

/// What went wrong while loading or attaching.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    /// The kernel refused the object (verifier, missing privileges, BTF, ...).
    #[error("loading the XDP program failed (needs root or CAP_BPF + CAP_NET_ADMIN): {0}")]
    Load(#[from] Box<aya::EbpfError>),
    /// The possible CPUs of the host could not be read.
    #[error("reading the possible CPUs ({path}) failed: {source}")]
    PossibleCpus {
        /// The file read.
        path: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// The map sizes asked for cannot be met.
    #[error(transparent)]
    Sizing(#[from] SizingError),
    /// A map the agent needs is not in the object.
    #[error("map `{0}` is missing from the XDP object")]
    MissingMap(&'static str),
    /// A map operation failed.
    #[error("map `{name}`: {source}")]
    Map {
        /// Map name.
        name: &'static str,
        /// The error.
        source: aya::maps::MapError,
    },
    /// A map could not be mapped into the agent's memory.
    #[error("mapping map `{name}`: {source}")]
    Mmap {
        /// Map name.
        name: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// The program itself could not be loaded into the kernel.
    #[error("XDP program: {0}")]
    Program(#[source] ProgramError),
    /// No interface by that name.
    #[error("interface `{0}` does not exist")]
    UnknownInterface(String),
    /// The kernel or driver refused the attachment.
    #[error("attaching to `{iface}` in {mode} mode failed: {source}")]
    Attach {
        /// Interface name.
        iface: String,
        /// Mode tried.
        mode: &'static str,
        /// The error.
        source: ProgramError,
    },
}

/// Settings the kernel program runs with.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Ring buffer size in bytes.
    pub ring_buffer_bytes: u32,
    /// Runtime knobs written to the settings map; [`load`] fills in the slot masks, the source
    /// masks and `allowlist_enabled` itself, and a random hash seed unless one is given (tests
    /// fix it so that slot collisions are reproducible).
    pub settings: Settings,
    /// Allow-listed source networks.
    pub allowlist: Vec<Cidr>,
    /// Map sizes wanted.
    pub maps: MapRequest,
    /// What one source is for the kernel's per-source budget.
    pub source_prefix: SourcePrefix,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            ring_buffer_bytes: sensor_common::RECORDS_MAP_BYTES,
            settings: Settings::DEFAULT,
            allowlist: Vec::new(),
            maps: MapRequest::default(),
            source_prefix: SourcePrefix::default(),
        }
    }
}

/// The mode an attachment actually got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachedMode {
    /// Native (driver) XDP.
    Driver,
    /// Generic (skb) XDP.
    Generic,
}

impl AttachedMode {
    /// Lowercase name for logs.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Driver => "drv",
            Self::Generic => "skb",
        }
    }
}

/// The loaded program and the maps userspace reads.
pub struct Loaded {
    ebpf: Ebpf,
    links: Vec<XdpLinkId>,
    /// Records from the kernel.
    pub records: Option<RingBuf<MapData>>,
    counters: PerCpuArray<MapData, [u64; sensor_common::Counter::COUNT as usize]>,
    plan: MapPlan,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("links", &self.links.len())
            .finish_non_exhaustive()
    }
}

/// Loads the embedded program into the kernel and configures its maps; attaches nothing.
///
/// # Errors
/// [`XdpError`] when the kernel refuses the program or a map.
pub fn load(options: &LoadOptions) -> Result<Loaded, XdpError> {
    load_object(options, PROGRAM)
}

/// [`load`] with another build of the sensor program than the embedded one (the benchmark
/// measures the previous build next to this one in the same run).
///
/// # Errors
/// As [`load`].
pub fn load_object(options: &LoadOptions, object: &[u8]) -> Result<Loaded, XdpError> {
    raise_memlock_limit();
    let cpus =
        aya::util::nr_cpus().map_err(|(path, source)| XdpError::PossibleCpus { path, source })?;
    let plan = plan(&options.maps, u32::try_from(cpus).unwrap_or(u32::MAX))?;
    tracing::info!(
        possible_cpus = plan.possible_cpus,
        dedup_slots_per_cpu = plan.dedup_slots,
        dedup_bytes = plan.dedup_bytes(),
        source_slots = plan.source_slots,
        source_bytes = plan.source_bytes(),
        ring_buffer_bytes = options.ring_buffer_bytes,
        total_bytes = plan
            .bounded_bytes()
            .saturating_add(u64::from(options.ring_buffer_bytes)),
        "Kernel maps sized."
    );
    // No kernel BTF: the program reads no kernel structure, so there is nothing to relocate,
    // and parsing vmlinux BTF would cost the agent tens of MiB of memory.
    let mut ebpf = EbpfLoader::new()
        .btf(None)
        .map_max_entries(RECORDS_MAP, options.ring_buffer_bytes)
        .map_max_entries(DEDUP_MAP, plan.dedup_slots)
        .map_max_entries(SOURCE_BUDGET_MAP, plan.source_slots)
        .load(object)
        .map_err(|e| XdpError::Load(Box::new(e)))?;
    let program = xdp_program(&mut ebpf)?;
    program.load().map_err(XdpError::Program)?;

    let settings = kernel_settings(options, &plan);
    {
        let map = ebpf
            .map_mut(SETTINGS_MAP)
            .ok_or(XdpError::MissingMap(SETTINGS_MAP))?;
        let mut array: Array<_, Settings> =
            Array::try_from(map).map_err(|source| XdpError::Map {
                name: SETTINGS_MAP,
                source,
            })?;
        array.set(0, settings, 0).map_err(|source| XdpError::Map {
            name: SETTINGS_MAP,
            source,
        })?;
    }
    {
        let map = ebpf
            .map_mut(ALLOWLIST_MAP)
            .ok_or(XdpError::MissingMap(ALLOWLIST_MAP))?;
        let mut trie: LpmTrie<_, [u8; 16], u8> =
            LpmTrie::try_from(map).map_err(|source| XdpError::Map {
                name: ALLOWLIST_MAP,
                source,
            })?;
        for cidr in &options.allowlist {
            let (addr, prefix) = cidr.to_mapped();
            trie.insert(&Key::new(prefix, addr.octets()), 1, 0)
                .map_err(|source| XdpError::Map {
                    name: ALLOWLIST_MAP,
                    source,
                })?;
        }
    }
    let records = ebpf
        .take_map(RECORDS_MAP)
        .ok_or(XdpError::MissingMap(RECORDS_MAP))?;
    let records = RingBuf::try_from(records).map_err(|source| XdpError::Map {
        name: RECORDS_MAP,
        source,
    })?;
    let counters = ebpf
        .take_map(COUNTERS_MAP)
        .ok_or(XdpError::MissingMap(COUNTERS_MAP))?;
    let counters = PerCpuArray::try_from(counters).map_err(|source| XdpError::Map {
        name: COUNTERS_MAP,
        source,
    })?;
    Ok(Loaded {
        ebpf,
        links: Vec::new(),
        records: Some(records),
        counters,
        plan,
    })
}

/// The settings written to the kernel: the caller's knobs plus what only the loader knows.
fn kernel_settings(options: &LoadOptions, plan: &MapPlan) -> Settings {
    let prefix = options.source_prefix;
    Settings {
        allowlist_enabled: u32::from(!options.allowlist.is_empty()),
        dedup_slot_mask: plan.dedup_slots.saturating_sub(1),
        source_slot_mask: plan.source_slots.saturating_sub(1),
        source_mask_v4: Settings::source_mask(96 + u32::from(prefix.ipv4.min(32))),
        source_mask_v6: Settings::source_mask(u32::from(prefix.ipv6.min(128))),
        hash_seed: match options.settings.hash_seed {
            0 => rand::random(),
            fixed => fixed,
        },
        ..options.settings
    }
}

fn xdp_program(ebpf: &mut Ebpf) -> Result<&mut Xdp, XdpError> {
    let program = ebpf
        .program_mut(PROGRAM_NAME)
        .ok_or(XdpError::Program(ProgramError::NotLoaded))?;
    program.try_into().map_err(XdpError::Program)
}

/// Lifts RLIMIT_MEMLOCK for kernels that still charge BPF maps against it (before 5.11).
fn raise_memlock_limit() {
    let limit = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads a valid rlimit struct; failure is harmless on kernels that use
    // memory-cgroup accounting, and is reported by the map creation itself otherwise.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raw const limit) };
    if rc != 0 {
        tracing::debug!("Could not raise RLIMIT_MEMLOCK; relying on memory-cgroup accounting.");
    }
}

impl Loaded {
    /// Attaches the program to `iface`. In [`XdpMode::Auto`] native mode is tried first and
    /// generic mode used where the driver refuses it (logged as a warning).
    ///
    /// # Errors
    /// [`XdpError`] when the interface does not exist or the attachment is refused.
    pub fn attach(&mut self, iface: &str, mode: XdpMode) -> Result<AttachedMode, XdpError> {
        let program = xdp_program(&mut self.ebpf)?;
        let attempt = |program: &mut Xdp, aya_mode, name| {
            program
                .attach(iface, aya_mode)
                .map_err(|source| match source {
                    ProgramError::UnknownInterface { .. } => {
                        XdpError::UnknownInterface(iface.to_owned())
                    }
                    source => XdpError::Attach {
                        iface: iface.to_owned(),
                        mode: name,
                        source,
                    },
                })
        };
        let (link, attached) = match mode {
            XdpMode::Drv => (
                attempt(program, AyaXdpMode::Driver, "drv")?,
                AttachedMode::Driver,
            ),
            XdpMode::Skb => (
                attempt(program, AyaXdpMode::Skb, "skb")?,
                AttachedMode::Generic,
            ),
            XdpMode::Auto => match attempt(program, AyaXdpMode::Driver, "drv") {
                Ok(link) => (link, AttachedMode::Driver),
                Err(XdpError::UnknownInterface(name)) => {
                    return Err(XdpError::UnknownInterface(name));
                }
                Err(err) => {
                    tracing::warn!(
                        interface = iface,
                        error = %err,
                        "Native XDP refused by the driver; falling back to generic (skb) mode."
                    );
                    (
                        attempt(program, AyaXdpMode::Skb, "skb")?,
                        AttachedMode::Generic,
                    )
                }
            },
        };
        self.links.push(link);
        Ok(attached)
    }

    /// Replaces the allow-listed sources while the program stays attached (configuration
    /// reload): the new networks are inserted first, then the stale ones removed, then
    /// `allowlist_enabled` follows, so no source on both lists is reported in between. Works
    /// without privileges on an open map (kernels >= 6.5).
    ///
    /// # Errors
    /// [`XdpError::Map`] when the kernel refuses an update.
    pub fn set_allowlist(&mut self, allowlist: &[Cidr]) -> Result<(), XdpError> {
        let err = |name| move |source| XdpError::Map { name, source };
        let wanted: Vec<([u8; 16], u32)> = allowlist
            .iter()
            .map(|cidr| {
                let (addr, prefix) = cidr.to_mapped();
                (addr.octets(), prefix)
            })
            .collect();
        {
            let map = self
                .ebpf
                .map_mut(ALLOWLIST_MAP)
                .ok_or(XdpError::MissingMap(ALLOWLIST_MAP))?;
            let mut trie: LpmTrie<_, [u8; 16], u8> =
                LpmTrie::try_from(map).map_err(err(ALLOWLIST_MAP))?;
            for (addr, prefix) in &wanted {
                trie.insert(&Key::new(*prefix, *addr), 1, 0)
                    .map_err(err(ALLOWLIST_MAP))?;
            }
            let stale: Vec<Key<[u8; 16]>> = trie
                .keys()
                .filter_map(Result::ok)
                .filter(|k| !wanted.contains(&(k.data(), k.prefix_len())))
                .collect();
            for key in &stale {
                trie.remove(key).map_err(err(ALLOWLIST_MAP))?;
            }
        }
        let map = self
            .ebpf
            .map_mut(SETTINGS_MAP)
            .ok_or(XdpError::MissingMap(SETTINGS_MAP))?;
        let mut array: Array<_, Settings> = Array::try_from(map).map_err(err(SETTINGS_MAP))?;
        let mut settings = array.get(&0, 0).map_err(err(SETTINGS_MAP))?;
        settings.allowlist_enabled = u32::from(!wanted.is_empty());
        array.set(0, settings, 0).map_err(err(SETTINGS_MAP))
    }

    /// Detaches the program from every interface. Also happens on drop and on process exit.
    pub fn detach_all(&mut self) {
        let links = std::mem::take(&mut self.links);
        if let Ok(program) = xdp_program(&mut self.ebpf) {
            for link in links {
                if let Err(err) = program.detach(link) {
                    tracing::warn!(error = %err, "Detaching the XDP program failed.");
                }
            }
        }
    }

    /// The map sizes chosen at load.
    #[must_use]
    pub const fn map_plan(&self) -> MapPlan {
        self.plan
    }

    /// Takes the aggregation maps for the agent's [`Aggregator`] (once: a second call finds
    /// them gone).
    ///
    /// # Errors
    /// A map is missing or of the wrong type, or the bitmaps could not be mapped.
    pub fn aggregator(&mut self) -> Result<Aggregator, XdpError> {
        use sensor_common::aggregate::{AGG_ACTIVE_MAP, AGG_BITS_MAP, AGG_INDEX_MAP};
        let take = |ebpf: &mut Ebpf, name| ebpf.take_map(name).ok_or(XdpError::MissingMap(name));
        let index = take(&mut self.ebpf, AGG_INDEX_MAP)?;
        let index = aya::maps::HashMap::try_from(index).map_err(|source| XdpError::Map {
            name: AGG_INDEX_MAP,
            source,
        })?;
        let active = take(&mut self.ebpf, AGG_ACTIVE_MAP)?;
        let active = Array::try_from(active).map_err(|source| XdpError::Map {
            name: AGG_ACTIVE_MAP,
            source,
        })?;
        let aya::maps::Map::Array(bits) = take(&mut self.ebpf, AGG_BITS_MAP)? else {
            return Err(XdpError::MissingMap(AGG_BITS_MAP));
        };
        Aggregator::new(index, active, &bits).map_err(|source| XdpError::Mmap {
            name: AGG_BITS_MAP,
            source,
        })
    }

    /// Current kernel counters, summed over CPUs.
    ///
    /// # Errors
    /// The map could not be read.
    pub fn counters(&self) -> Result<CounterSnapshot, XdpError> {
        CounterSnapshot::read(&self.counters).map_err(|source| XdpError::Map {
            name: COUNTERS_MAP,
            source,
        })
    }

    /// A duplicate of the program's fd, for running it from several threads at once with
    /// [`super::testrun::run`] (tests and benchmarks).
    ///
    /// # Errors
    /// The program is missing or the fd could not be duplicated.
    pub fn program_fd(&mut self) -> Result<std::os::fd::OwnedFd, XdpError> {
        let program = xdp_program(&mut self.ebpf)?;
        let fd = program.fd().map_err(XdpError::Program)?;
        fd.as_fd().try_clone_to_owned().map_err(|e| {
            XdpError::Program(ProgramError::SyscallError(aya::sys::SyscallError {
                call: "dup",
                io_error: e,
            }))
        })
    }

    /// Runs the program on one frame with `BPF_PROG_TEST_RUN` (tests and benchmarks).
    ///
    /// # Errors
    /// The program is missing or the kernel refused the run.
    pub fn test_run(
        &mut self,
        frame: &[u8],
        repeat: u32,
    ) -> Result<super::testrun::TestRunOutput, super::testrun::TestRunError> {
        let program =
            xdp_program(&mut self.ebpf).map_err(|e| std::io::Error::other(e.to_string()))?;
        let fd = program
            .fd()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        super::testrun::run(fd.as_fd(), frame, repeat)
    }
}

impl Drop for Loaded {
    fn drop(&mut self) {
        self.detach_all();
    }
}
