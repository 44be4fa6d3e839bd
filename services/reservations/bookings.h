/* Reservations (droits de réservation): STOCK reservations of one unit
 * for a period, FLOW reservations of a number of released units of a
 * programme or a landlord in a year; ACTIVE -> RELEASED | CANCELLED. */
#ifndef RESERVATIONS_BOOKINGS_H
#define RESERVATIONS_BOOKINGS_H

#include "records.h"
#include "server.h"

/* The subject of a reservation's events: "units/<unit id>" for STOCK (the
 * unit's order is kept), "reservations/<id>" for FLOW. */
void reservation_subject(const Passerelle__Reservation *r, char out[KEY_MAX]);

/* ReservationCreateRequest -> Reservation */
void handle_reservation_create(void *ctx, const call_t *call, const ProtobufCMessage *request,
                               reply_t *reply);
/* ReservationStepRequest -> Reservation */
void handle_reservation_release(void *ctx, const call_t *call, const ProtobufCMessage *request,
                                reply_t *reply);
/* ReservationStepRequest -> Reservation */
void handle_reservation_cancel(void *ctx, const call_t *call, const ProtobufCMessage *request,
                               reply_t *reply);
/* ReservationStepRequest -> Reservation */
void handle_reservation_vacancy(void *ctx, const call_t *call, const ProtobufCMessage *request,
                                reply_t *reply);
/* ReservationGetRequest -> Reservation */
void handle_reservation_get(void *ctx, const call_t *call, const ProtobufCMessage *request,
                            reply_t *reply);
/* ReservationListRequest -> ReservationList */
void handle_reservation_list(void *ctx, const call_t *call, const ProtobufCMessage *request,
                             reply_t *reply);

#endif
