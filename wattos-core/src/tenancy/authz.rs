//! Authorization: does this request's principal hold a permission?

use std::sync::Arc;

use super::permission::{Permission, PermissionSet};
use super::role::{CustomRoles, effective_permissions};
use crate::context::RequestContext;
use crate::error::{Error, Result};

/// Decides which permissions a request holds. Synchronous and cheap: it runs on every request.
pub trait Authorizer: Send + Sync {
    /// The permissions of `ctx`'s principal within `ctx`'s tenant.
    fn permissions(&self, ctx: &RequestContext) -> PermissionSet;

    /// Fails with `forbidden` unless `ctx` holds `permission`.
    ///
    /// # Errors
    /// [`crate::ErrorKind::Forbidden`].
    fn require(&self, ctx: &RequestContext, permission: Permission) -> Result<()> {
        require_in(self.permissions(ctx), permission)
    }
}

impl<T: Authorizer + ?Sized> Authorizer for Arc<T> {
    fn permissions(&self, ctx: &RequestContext) -> PermissionSet {
        (**self).permissions(ctx)
    }
}

/// Fails with `forbidden` (code `forbidden`, message naming the permission) unless `set` holds it.
///
/// # Errors
/// [`crate::ErrorKind::Forbidden`].
pub fn require_in(set: PermissionSet, permission: Permission) -> Result<()> {
    if set.contains(permission) {
        Ok(())
    } else {
        Err(Error::forbidden(format!(
            "missing permission `{permission}`"
        )))
    }
}

/// Built-in roles only: the principal's roles are looked up in [`super::BuiltinRole`].
///
/// ```
/// use wattos_core::{Principal, RequestContext, TenantId};
/// use wattos_core::tenancy::{Authorizer, BuiltinRoles, Permission};
/// let ctx = RequestContext::new(TenantId::new("t").unwrap(), Principal::user("u", ["viewer"]));
/// assert!(BuiltinRoles.require(&ctx, Permission::RagQuery).is_ok());
/// assert_eq!(BuiltinRoles.require(&ctx, Permission::KeysManage).unwrap_err().code(), "forbidden");
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct BuiltinRoles;

impl Authorizer for BuiltinRoles {
    fn permissions(&self, ctx: &RequestContext) -> PermissionSet {
        effective_permissions(&ctx.principal().roles, &CustomRoles::default())
    }
}

#[cfg(test)]
fn _object_safe(_: Arc<dyn Authorizer>) {}
