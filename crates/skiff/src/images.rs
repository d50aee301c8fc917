//! `skiff images`: build the images a node needs without downloading any, as docker-archive
//! tarballs. Dropped into `<data-dir>/agent/images/`, they are imported when the agent
//! starts (pods then use them without a pull).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use skiff_cri::image::{self, ArchiveInfo};

#[derive(Args)]
pub struct ImagesArgs {
    #[command(subcommand)]
    command: ImagesCommand,
}

#[derive(Subcommand)]
enum ImagesCommand {
    /// Build a busybox image from Debian's `busybox-static` (/bin/busybox): sh, wget,
    /// httpd, nc, sleep and the other applets, /etc/passwd with root and nobody, /tmp.
    BuildBusybox {
        /// Where to write the archive (e.g. /var/lib/skiff/agent/images/busybox.tar).
        #[arg(long, short)]
        output: PathBuf,
        /// Image name; without a registry containerd stores it as docker.io/library/NAME.
        #[arg(long, default_value = image::BUSYBOX_TEST_IMAGE)]
        name: String,
        /// The static busybox binary to package.
        #[arg(long, default_value = image::BUSYBOX_PATH)]
        busybox: PathBuf,
    },
    /// Build Skiff's sandbox ("pause") image. The agent imports it by itself; this is for
    /// a containerd that Skiff does not start (--container-runtime-endpoint).
    BuildPause {
        /// Where to write the archive.
        #[arg(long, short)]
        output: PathBuf,
    },
}

pub fn run(args: ImagesArgs) -> Result<()> {
    let (output, name, info) = match args.command {
        ImagesCommand::BuildBusybox {
            output,
            name,
            busybox,
        } => {
            let info = image::build_busybox_image_from(&busybox, &output, &name)
                .context("building the busybox image")?;
            (output, name, info)
        }
        ImagesCommand::BuildPause { output } => {
            let info = image::build_pause_image(&output).context("building the pause image")?;
            (output, image::PAUSE_IMAGE.to_string(), info)
        }
    };
    report(&output, &name, &info);
    Ok(())
}

fn report(output: &std::path::Path, name: &str, info: &ArchiveInfo) {
    println!(
        "wrote {} ({} bytes): image {name}, id {}",
        output.display(),
        info.archive_bytes,
        info.image_id
    );
}
