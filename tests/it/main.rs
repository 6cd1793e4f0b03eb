//! backupctl's integration tests: one crate (one binary to link), one module
//! per concern.

mod accounts;
mod architecture;
mod aws_access;
mod bad_policies;
mod cli;
mod copies;
mod crash;
mod cross_account;
mod emulator;
mod every_command;
mod faults;
mod fuzz;
mod golden;
mod guard;
mod json_contract;

mod live;
mod locks;
mod migration;
mod organizations;
mod performance;
mod promises;
mod properties;
mod protection;
mod real_ec2;
mod recycle_bin;
mod report;
mod review;
mod schedule;
mod secrets;
mod shipped_policies;
mod support;
