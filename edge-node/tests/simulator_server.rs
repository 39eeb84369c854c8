//! The simulator's Modbus server driven by tokio-modbus's own client: every function code,
//! exceptions, several units, and the injected faults.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_node::simulator::{
    BankSizes, ExceptionRule, Plant, PlantServer, PlantService, Table, UnknownUnitReply,
};
use tokio_modbus::client::Context;
use tokio_modbus::prelude::*;

const WAIT: Duration = Duration::from_secs(5);

async fn server_with_units(units: &[u8]) -> PlantServer {
    let mut plant = Plant::new();
    for &unit in units {
        plant.add_unit(unit, BankSizes::uniform(100)).unwrap();
    }
    PlantServer::start("127.0.0.1:0".parse().unwrap(), Arc::new(plant))
        .await
        .unwrap()
}

async fn client(addr: SocketAddr, unit: u8) -> Context {
    tcp::connect_slave(addr, Slave(unit)).await.unwrap()
}

/// Bounds every client call so a missing answer fails the test instead of hanging it.
async fn bounded<T>(call: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, call)
        .await
        .expect("the server answered in time")
}

#[tokio::test]
async fn every_function_code_reads_and_writes_the_bank() {
    let server = server_with_units(&[1]).await;
    let bank = server.bank(1).unwrap();
    bank.write_words(Table::InputRegisters, 10, &[11, 12])
        .unwrap();
    bank.write_bits(Table::DiscreteInputs, 3, &[true, false, true])
        .unwrap();
    let mut ctx = client(server.local_addr(), 1).await;

    // 05, 15 then 01.
    bounded(ctx.write_single_coil(0, true))
        .await
        .unwrap()
        .unwrap();
    bounded(ctx.write_multiple_coils(5, &[true, true, false, true]))
        .await
        .unwrap()
        .unwrap();
    let coils = bounded(ctx.read_coils(0, 9)).await.unwrap().unwrap();
    assert_eq!(
        coils,
        [true, false, false, false, false, true, true, false, true]
    );
    assert!(bank.coil(8).unwrap());

    // 02.
    let inputs = bounded(ctx.read_discrete_inputs(2, 5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(inputs, [false, true, false, true, false]);

    // 06, 16 then 03.
    bounded(ctx.write_single_register(20, 0xBEEF))
        .await
        .unwrap()
        .unwrap();
    bounded(ctx.write_multiple_registers(21, &[1, 2, 3]))
        .await
        .unwrap()
        .unwrap();
    let holding = bounded(ctx.read_holding_registers(20, 4))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(holding, [0xBEEF, 1, 2, 3]);
    assert_eq!(bank.holding_register(23).unwrap(), 3);

    // 04.
    let input = bounded(ctx.read_input_registers(10, 2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(input, [11, 12]);

    // 22 and 23.
    bounded(ctx.masked_write_register(20, 0x00FF, 0x1200))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bank.holding_register(20).unwrap(), 0x12EF);
    let read = bounded(ctx.read_write_multiple_registers(21, 2, 22, &[9]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read, [1, 9]);

    server.shutdown().await;
}

#[tokio::test]
async fn bad_addresses_quantities_and_functions_get_their_exception_codes() {
    let server = server_with_units(&[1]).await;
    server
        .bank(1)
        .unwrap()
        .mark_invalid(Table::HoldingRegisters, 50, 10);
    let mut ctx = client(server.local_addr(), 1).await;

    // 02: beyond the table (size 100), and inside a configured hole.
    let beyond = bounded(ctx.read_holding_registers(95, 10)).await.unwrap();
    assert_eq!(beyond, Err(ExceptionCode::IllegalDataAddress));
    let coil_beyond = bounded(ctx.write_single_coil(100, true)).await.unwrap();
    assert_eq!(coil_beyond, Err(ExceptionCode::IllegalDataAddress));
    let hole = bounded(ctx.read_holding_registers(45, 6)).await.unwrap();
    assert_eq!(hole, Err(ExceptionCode::IllegalDataAddress));
    let write_hole = bounded(ctx.write_single_register(59, 1)).await.unwrap();
    assert_eq!(write_hole, Err(ExceptionCode::IllegalDataAddress));
    assert!(
        bounded(ctx.read_holding_registers(40, 10))
            .await
            .unwrap()
            .is_ok()
    );

    // 03: quantities outside the specification's limits.
    let too_many = bounded(ctx.read_holding_registers(0, 126)).await.unwrap();
    assert_eq!(too_many, Err(ExceptionCode::IllegalDataValue));
    let none = bounded(ctx.read_input_registers(0, 0)).await.unwrap();
    assert_eq!(none, Err(ExceptionCode::IllegalDataValue));
    let too_many_coils = bounded(ctx.read_coils(0, 2001)).await.unwrap();
    assert_eq!(too_many_coils, Err(ExceptionCode::IllegalDataValue));
    let too_many_writes = bounded(ctx.write_multiple_coils(0, &[false; 1969]))
        .await
        .unwrap();
    assert_eq!(too_many_writes, Err(ExceptionCode::IllegalDataValue));

    // 01: functions the simulator does not implement.
    let report = bounded(ctx.call(Request::ReportServerId)).await.unwrap();
    assert_eq!(report, Err(ExceptionCode::IllegalFunction));
    let custom = bounded(ctx.call(Request::Custom(0x41, vec![0, 1].into())))
        .await
        .unwrap();
    assert_eq!(custom, Err(ExceptionCode::IllegalFunction));

    server.shutdown().await;
}

#[tokio::test]
async fn units_are_independent_and_unknown_units_follow_the_reply_policy() {
    let server = server_with_units(&[1, 2]).await;
    server
        .bank(1)
        .unwrap()
        .set_holding_register(0, 100)
        .unwrap();
    server
        .bank(2)
        .unwrap()
        .set_holding_register(0, 200)
        .unwrap();
    let mut ctx = client(server.local_addr(), 1).await;
    assert_eq!(
        bounded(ctx.read_holding_registers(0, 1)).await.unwrap(),
        Ok(vec![100])
    );
    ctx.set_slave(Slave(2));
    assert_eq!(
        bounded(ctx.read_holding_registers(0, 1)).await.unwrap(),
        Ok(vec![200])
    );

    // Default: an unknown unit gets no answer at all.
    ctx.set_slave(Slave(7));
    let silent =
        tokio::time::timeout(Duration::from_millis(300), ctx.read_holding_registers(0, 1)).await;
    assert!(silent.is_err(), "unit 7 must not answer: {silent:?}");

    // Gateway policy: exception 0x0B, on a fresh connection (the old one has a stale request).
    server
        .plant()
        .set_unknown_unit_reply(UnknownUnitReply::GatewayTargetDevice);
    let mut ctx = client(server.local_addr(), 7).await;
    assert_eq!(
        bounded(ctx.read_holding_registers(0, 1)).await.unwrap(),
        Err(ExceptionCode::GatewayTargetDevice)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn broadcast_writes_reach_every_unit_without_an_answer() {
    let server = server_with_units(&[1, 2]).await;
    let mut ctx = client(server.local_addr(), 0).await;
    // Nothing answers a broadcast, so the client's call never completes; bound it.
    let unanswered =
        tokio::time::timeout(Duration::from_millis(300), ctx.write_single_register(5, 55)).await;
    assert!(unanswered.is_err());
    for unit in [1, 2] {
        assert_eq!(server.bank(unit).unwrap().holding_register(5).unwrap(), 55);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn response_delay_holds_back_only_the_faulty_unit() {
    let server = server_with_units(&[1, 2]).await;
    let delay = Duration::from_millis(200);
    server.plant().set_response_delay(1, delay).unwrap();
    let mut ctx = client(server.local_addr(), 1).await;

    let started = Instant::now();
    bounded(ctx.read_holding_registers(0, 1))
        .await
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() >= delay,
        "unit 1 answered before its delay"
    );
    assert_eq!(
        server.plant().unit(1).unwrap().faults().response_delay,
        delay
    );
    assert!(
        server
            .plant()
            .unit(2)
            .unwrap()
            .faults()
            .response_delay
            .is_zero()
    );

    server
        .plant()
        .set_response_delay(1, Duration::ZERO)
        .unwrap();
    bounded(ctx.read_holding_registers(0, 1))
        .await
        .unwrap()
        .unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn injected_exceptions_match_function_and_range_until_cleared() {
    let server = server_with_units(&[1]).await;
    server
        .plant()
        .add_exception(
            1,
            ExceptionRule {
                function: Some(3),
                start: 10,
                count: 5,
                code: ExceptionCode::ServerDeviceBusy,
            },
        )
        .unwrap();
    server
        .plant()
        .add_exception(
            1,
            ExceptionRule {
                function: None,
                start: 90,
                count: 10,
                code: ExceptionCode::new(0x0C),
            },
        )
        .unwrap();
    let mut ctx = client(server.local_addr(), 1).await;
    assert_eq!(
        bounded(ctx.read_holding_registers(12, 1)).await.unwrap(),
        Err(ExceptionCode::ServerDeviceBusy)
    );
    assert!(
        bounded(ctx.read_input_registers(12, 1))
            .await
            .unwrap()
            .is_ok()
    );
    assert!(
        bounded(ctx.read_holding_registers(0, 10))
            .await
            .unwrap()
            .is_ok()
    );
    assert_eq!(
        bounded(ctx.write_single_coil(95, true)).await.unwrap(),
        Err(ExceptionCode::Custom(0x0C))
    );
    server.plant().clear_faults();
    assert!(
        bounded(ctx.read_holding_registers(12, 1))
            .await
            .unwrap()
            .is_ok()
    );
    server.shutdown().await;
}

#[tokio::test]
async fn silent_unit_does_not_answer() {
    let server = server_with_units(&[1]).await;
    server.plant().set_silent(1, true).unwrap();
    let mut ctx = client(server.local_addr(), 1).await;
    let silent =
        tokio::time::timeout(Duration::from_millis(300), ctx.read_holding_registers(0, 1)).await;
    assert!(silent.is_err());
    server.plant().clear_unit_faults(1).unwrap();
    let mut ctx = client(server.local_addr(), 1).await;
    assert!(
        bounded(ctx.read_holding_registers(0, 1))
            .await
            .unwrap()
            .is_ok()
    );
    server.shutdown().await;
}

#[tokio::test]
async fn dropped_connections_are_counted_and_clients_can_reconnect() {
    let server = server_with_units(&[1]).await;
    let mut first = client(server.local_addr(), 1).await;
    let mut second = client(server.local_addr(), 1).await;
    bounded(first.read_holding_registers(0, 1))
        .await
        .unwrap()
        .unwrap();
    bounded(second.read_holding_registers(0, 1))
        .await
        .unwrap()
        .unwrap();
    assert!(server.wait_for_connections(|&n| n == 2, WAIT).await);

    server.drop_connections();
    assert!(server.wait_for_connections(|&n| n == 0, WAIT).await);
    assert!(bounded(first.read_holding_registers(0, 1)).await.is_err());

    let mut again = client(server.local_addr(), 1).await;
    assert!(
        bounded(again.read_holding_registers(0, 1))
            .await
            .unwrap()
            .is_ok()
    );
    assert!(server.wait_for_connections(|&n| n == 1, WAIT).await);
    server.shutdown().await;
}

#[tokio::test]
async fn a_pending_delayed_answer_is_abandoned_when_connections_drop() {
    let server = server_with_units(&[1]).await;
    server
        .plant()
        .set_response_delay(1, Duration::from_secs(60))
        .unwrap();
    let mut ctx = client(server.local_addr(), 1).await;
    let pending = tokio::spawn(async move { ctx.read_holding_registers(0, 1).await });
    assert!(server.wait_for_connections(|&n| n == 1, WAIT).await);
    server.drop_connections();
    let result = bounded(pending).await.unwrap();
    assert!(
        result.is_err(),
        "the client sees the connection end: {result:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn stop_refuses_connections_and_restart_reopens_the_same_port() {
    let server = server_with_units(&[1]).await;
    let addr = server.local_addr();
    let mut ctx = client(addr, 1).await;
    bounded(ctx.read_holding_registers(0, 1))
        .await
        .unwrap()
        .unwrap();

    server.stop_listening().await;
    assert!(!server.is_listening().await);
    assert!(server.wait_for_connections(|&n| n == 0, WAIT).await);
    assert!(bounded(ctx.read_holding_registers(0, 1)).await.is_err());
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "port closed"
    );

    server.start_listening().await.unwrap();
    let mut ctx = client(addr, 1).await;
    assert!(
        bounded(ctx.read_holding_registers(0, 1))
            .await
            .unwrap()
            .is_ok()
    );

    server.restart().await.unwrap();
    assert!(bounded(ctx.read_holding_registers(0, 1)).await.is_err());
    let mut ctx = client(addr, 1).await;
    assert!(
        bounded(ctx.read_holding_registers(0, 1))
            .await
            .unwrap()
            .is_ok()
    );
    server.shutdown().await;
}

#[tokio::test]
async fn rejected_connections_are_closed_at_once() {
    let server = server_with_units(&[1]).await;
    server.set_reject_new_connections(true);
    let mut ctx = client(server.local_addr(), 1).await;
    assert!(bounded(ctx.read_holding_registers(0, 1)).await.is_err());
    assert_eq!(server.connection_count(), 0);
    server.set_reject_new_connections(false);
    let mut ctx = client(server.local_addr(), 1).await;
    assert!(
        bounded(ctx.read_holding_registers(0, 1))
            .await
            .unwrap()
            .is_ok()
    );
    server.shutdown().await;
}

/// The service does not depend on TCP: serve it with tokio-modbus's RTU server on one end
/// of a pseudo-terminal pair and talk RTU to it from the other.
#[cfg(unix)]
#[tokio::test]
async fn the_service_answers_over_a_serial_line() {
    let mut plant = Plant::new();
    plant.add_unit(3, BankSizes::uniform(16)).unwrap();
    plant.bank(3).unwrap().set_input_register(1, 31).unwrap();
    let plant = Arc::new(plant);
    let (device_end, client_end) = tokio_serial::SerialStream::pair().unwrap();
    let service = PlantService::new(Arc::clone(&plant));
    let server =
        tokio::spawn(tokio_modbus::server::rtu::Server::new(device_end).serve_forever(service));

    let mut ctx = rtu::attach_slave(client_end, Slave(3));
    assert_eq!(
        bounded(ctx.read_input_registers(0, 2)).await.unwrap(),
        Ok(vec![0, 31])
    );
    bounded(ctx.write_single_register(2, 7))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(plant.bank(3).unwrap().holding_register(2).unwrap(), 7);
    assert_eq!(
        bounded(ctx.read_holding_registers(15, 2)).await.unwrap(),
        Err(ExceptionCode::IllegalDataAddress)
    );
    // Another slave address on the line stays silent, as RTU devices do.
    ctx.set_slave(Slave(4));
    let silent =
        tokio::time::timeout(Duration::from_millis(300), ctx.read_input_registers(0, 1)).await;
    assert!(silent.is_err());
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_clients_each_get_their_own_units_data() {
    let units = [1u8, 2, 3, 4];
    let server = server_with_units(&units).await;
    for unit in units {
        let values: Vec<u16> = (0..100).map(|i| u16::from(unit) * 1000 + i).collect();
        server
            .bank(unit)
            .unwrap()
            .write_words(Table::HoldingRegisters, 0, &values)
            .unwrap();
    }
    let addr = server.local_addr();
    let clients: Vec<_> = (0..16u8)
        .map(|n| {
            tokio::spawn(async move {
                let mut ctx = client(addr, 1).await;
                for round in 0..50u8 {
                    let unit = units[usize::from((n + round) % 4)];
                    ctx.set_slave(Slave(unit));
                    let words = bounded(ctx.read_holding_registers(0, 100))
                        .await
                        .unwrap()
                        .unwrap();
                    assert_eq!(words[0], u16::from(unit) * 1000);
                    assert_eq!(words[99], u16::from(unit) * 1000 + 99);
                }
            })
        })
        .collect();
    for client in clients {
        bounded(client).await.unwrap();
    }
    assert!(server.wait_for_connections(|&n| n == 0, WAIT).await);
    server.shutdown().await;
}
