//! The catalog's watches: the one watch of AppImages and the one of AppImageRevisions in the
//! webhook (issue 25: the controllers read the catalog instead of watching them again). Every
//! replica runs them; admission and the controllers read what they fill.

use appimage::resource::AppImage;
use appimage::revision::AppImageRevision;
use futures::StreamExt;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::task::JoinHandle;

use super::{AppImages, Revisions, appimages};

/// Objects per page of a watch's initial list, here and in the controllers' watches (kube's
/// default: 500). A page is held whole, managedFields included, until its objects are
/// compacted or slimmed, so a smaller page lowers the peak of a (re)list.
pub const PAGE: u32 = 100;

/// The AppImages and their revisions, and the tasks that keep them current (until aborted).
pub fn watch(client: &Client) -> (AppImages, Revisions, [JoinHandle<()>; 2]) {
    let (reader, mut writer) = appimages();
    let stream = watcher(
        Api::<AppImage>::all(client.clone()),
        watcher::Config::default().page_size(PAGE),
    )
    .default_backoff();
    let images = tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(event) => writer.apply(event),
                Err(e) => tracing::warn!("AppImage watch: {e} (retrying)"),
            }
        }
    });
    let (revisions, task) = watch_revisions(client, reader.clone());
    (reader, revisions, [images, task])
}

/// Revisions of AppImages (issue 17), watched like the AppImages; until the AppImageRevision
/// CRD is installed the store stays empty and Pods naming a revision are denied. Each change
/// is told to the catalog's listeners as a change of its AppImage.
fn watch_revisions(client: &Client, images: AppImages) -> (Revisions, JoinHandle<()>) {
    let revisions = Revisions::default();
    let mut writer = revisions.writer();
    let stream = watcher(
        Api::<AppImageRevision>::all(client.clone()),
        watcher::Config::default().page_size(PAGE),
    )
    .default_backoff();
    let task = tokio::spawn(async move {
        futures::pin_mut!(stream);
        let mut warned = false;
        while let Some(event) = stream.next().await {
            match event {
                Ok(event) => {
                    let changed = match &event {
                        watcher::Event::Apply(r) | watcher::Event::Delete(r) => {
                            Some(Some(r.spec.app_image.clone()))
                        }
                        watcher::Event::InitDone => Some(None),
                        _ => None,
                    };
                    writer.apply(event);
                    if let Some(name) = changed {
                        images.tell(name.as_deref());
                    }
                }
                Err(e) if !warned => {
                    warned = true;
                    tracing::warn!("AppImageRevision watch: {e} (retrying; is the CRD installed?)");
                }
                Err(e) => tracing::debug!("AppImageRevision watch: {e} (retrying)"),
            }
        }
    });
    (revisions, task)
}
