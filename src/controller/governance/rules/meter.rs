//! Metering CEL evaluation. The `cel` crate (0.15) has no cost limit and cannot be
//! interrupted, so each compiled expression is rewritten once to pass through a
//! function of ours, [`COST`] (`@cost`, a name CEL source cannot spell): every
//! comprehension (`all`, `exists`, `map`, `filter`, `exists_one`) charges the size of
//! its range each time it runs, and every operator or function that walks its operands
//! (`+`, `in`, `==`, `contains`, `matches`, ...) charges theirs. Past the [`Meter`]'s
//! cost, its deadline, or once abandoned, every further charge fails, so the evaluation
//! unwinds within one operation: nested loops stop at once, a flat loop runs out in
//! constant steps.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::Instant;

use cel::common::ast::{CallExpr, Expr, IdedExpr};

/// The function every metered step passes through.
pub(super) const COST: &str = "@cost";

/// Functions whose operands are not charged: the logical operators and the conditional
/// (their operands are charged where they are computed, and the macros' loop steps keep
/// their shape, which the interpreter relies on to build `map` and `filter` results in
/// place), and what takes constant time.
const UNCHARGED: &[&str] = &[
    "_&&_",
    "_||_",
    "_?_:_",
    "!_",
    "@not_strictly_false",
    "size",
    "_[_]",
    "_[?_]",
    "_?._",
    "has",
    "int",
    "uint",
    "double",
    "bool",
    "type",
    "dyn",
    COST,
];

/// Rewrites `expr` so that its costly steps pass through [`COST`].
pub(super) fn meter_expression(expr: &mut IdedExpr, next_id: &mut u64) {
    match &mut expr.expr {
        Expr::Call(call) => {
            if let Some(target) = call.target.as_deref_mut() {
                meter_expression(target, next_id);
            }
            for arg in &mut call.args {
                meter_expression(arg, next_id);
            }
            if !UNCHARGED.contains(&call.func_name.as_str()) {
                if let Some(target) = call.target.as_deref_mut() {
                    charge_operand(target, next_id);
                }
                for arg in &mut call.args {
                    charge_operand(arg, next_id);
                }
            }
        }
        Expr::Comprehension(c) => {
            for part in [
                &mut c.iter_range,
                &mut c.accu_init,
                &mut c.loop_cond,
                &mut c.loop_step,
                &mut c.result,
            ] {
                meter_expression(part, next_id);
            }
            // Charged every time the comprehension runs: nested loops pay for each turn.
            through_cost(&mut c.iter_range, next_id);
        }
        Expr::List(list) => {
            for element in &mut list.elements {
                meter_expression(element, next_id);
            }
        }
        Expr::Map(map) => {
            for entry in &mut map.entries {
                if let cel::common::ast::EntryExpr::MapEntry(e) = &mut entry.expr {
                    meter_expression(&mut e.key, next_id);
                    meter_expression(&mut e.value, next_id);
                }
            }
        }
        Expr::Struct(strct) => {
            for entry in &mut strct.entries {
                if let cel::common::ast::EntryExpr::StructField(f) = &mut entry.expr {
                    meter_expression(&mut f.value, next_id);
                }
            }
        }
        Expr::Select(select) => meter_expression(&mut select.operand, next_id),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
    }
}

/// Charges an operand, unless it costs nothing to pass: a literal, a list written in
/// the expression (bounded by it, and part of the `map`/`filter` step's shape), or a
/// comprehension's own accumulator (named `@…`).
fn charge_operand(operand: &mut IdedExpr, next_id: &mut u64) {
    match &operand.expr {
        Expr::Literal(_) | Expr::List(_) => {}
        Expr::Ident(name) if name.starts_with('@') => {}
        _ => through_cost(operand, next_id),
    }
}

fn through_cost(operand: &mut IdedExpr, next_id: &mut u64) {
    let inner = std::mem::take(operand);
    *next_id += 1;
    *operand = IdedExpr {
        id: *next_id,
        expr: Expr::Call(CallExpr {
            func_name: COST.to_owned(),
            target: None,
            args: vec![inner],
        }),
    };
}

/// Why a [`Meter`] refused further steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exhausted {
    /// More steps than the meter allows.
    Cost,
    /// Past the meter's deadline.
    Time,
    /// Whoever waited for the verdict gave up on it.
    Abandoned,
}

/// The steps one evaluation may take, until when, and whether anyone still waits for it.
pub struct Meter {
    max: u64,
    deadline: Option<Instant>,
    abandoned: Arc<AtomicBool>,
    spent: AtomicU64,
    /// 0 while running, else an [`Exhausted`] as `1 + index`.
    exhausted: AtomicU8,
}

impl Meter {
    /// A meter of `max` steps until `deadline`, stopped early once `abandoned` is set.
    pub fn new(max: u64, deadline: Option<Instant>, abandoned: Arc<AtomicBool>) -> Self {
        Self {
            max,
            deadline,
            abandoned,
            spent: AtomicU64::new(0),
            exhausted: AtomicU8::new(0),
        }
    }

    /// A meter with no deadline that no one abandons, of `max` steps.
    pub fn steps(max: u64) -> Self {
        Self::new(max, None, Arc::new(AtomicBool::new(false)))
    }

    /// Takes `steps`, or says why no more may be taken.
    fn charge(&self, steps: u64) -> Result<(), Exhausted> {
        if let Some(why) = self.exhausted() {
            return Err(why);
        }
        let spent = self.spent.fetch_add(steps, Ordering::Relaxed) + steps;
        let why = if spent > self.max {
            Some(Exhausted::Cost)
        } else if self.abandoned.load(Ordering::Relaxed) {
            Some(Exhausted::Abandoned)
        } else if self.deadline.is_some_and(|d| Instant::now() >= d) {
            Some(Exhausted::Time)
        } else {
            None
        };
        match why {
            Some(why) => {
                self.exhausted.store(why as u8 + 1, Ordering::Relaxed);
                Err(why)
            }
            None => Ok(()),
        }
    }

    /// Why the meter stopped, if it has.
    pub fn exhausted(&self) -> Option<Exhausted> {
        match self.exhausted.load(Ordering::Relaxed) {
            1 => Some(Exhausted::Cost),
            2 => Some(Exhausted::Time),
            3 => Some(Exhausted::Abandoned),
            _ => None,
        }
    }

    /// Steps taken so far.
    pub fn spent(&self) -> u64 {
        self.spent.load(Ordering::Relaxed)
    }
}

/// A native function as the `cel` crate registers it.
pub(super) type Native = Box<
    dyn for<'c, 'k> Fn(
            &mut cel::FunctionContext<'c, 'k>,
        ) -> Result<cel::common::value::CowVal<'c, 'k>, cel::ExecutionError>
        + Send
        + Sync,
>;

/// [`COST`]: charges one step and the size of its operand (a list's or map's entries, a
/// string's characters), and passes the operand through untouched.
pub(super) fn cost_function(meter: Arc<Meter>) -> Native {
    Box::new(move |ftx| {
        let operand = ftx
            .args
            .pop()
            .ok_or_else(|| cel::ExecutionError::invalid_argument_count(1, 0))?;
        let size = operand
            .as_sizer()
            .map_or(0, |s| u64::try_from(*s.size().inner()).unwrap_or(0));
        meter
            .charge(1 + size)
            .map_err(|why| cel::ExecutionError::function_error(COST, format!("{why:?}")))?;
        Ok(operand)
    })
}
