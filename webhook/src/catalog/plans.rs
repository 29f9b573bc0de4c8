//! The injection plans of one stored AppImage (or revision) under one trust generation: built
//! on the first Pod of each role, template and image reference, kept with the [`super::Derived`]
//! they belong to, and dropped with it (a new resourceVersion, a pruned revision, new keys).

use std::sync::{Arc, Mutex};

use appimage::injection::{InjectionError, Plan, Request, Templates};
use appimage::resource::AppImage;

/// Plans kept per AppImage at most: a role, template and pinned image each. Pods naming more
/// (only a role or template that exists makes a plan) are planned per request, not kept.
const MAX_PLANS: usize = 16;

#[derive(Debug, Default)]
pub struct Plans(Mutex<Vec<Arc<Plan>>>);

impl Plans {
    /// The plan for `req`, built from `image()` and kept on first use (`share` then lets it
    /// share its parts with other AppImages' plans).
    pub fn get(
        &self,
        image: impl FnOnce() -> AppImage,
        templates: &Templates,
        req: &Request,
        share: impl FnOnce(&mut Plan),
    ) -> Result<Arc<Plan>, InjectionError> {
        let found = self.lock().iter().find(|p| p.key.matches(req)).cloned();
        if let Some(plan) = found {
            return Ok(plan);
        }
        // Built outside the lock; two first Pods at once may both build it, one is kept.
        let mut plan = Plan::build(&image(), templates, req)?;
        share(&mut plan);
        let plan = Arc::new(plan);
        let mut plans = self.lock();
        if plans.len() < MAX_PLANS && !plans.iter().any(|p| p.key.matches(req)) {
            plans.push(plan.clone());
        }
        Ok(plan)
    }

    /// Plans kept.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Plan>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}
